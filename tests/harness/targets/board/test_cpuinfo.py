"""The generated ARM /proc/cpuinfo and /sys/devices/system/cpu files."""

import re

import pytest

from harness.targets.board.cpuinfo import cpuinfo_text, sys_cpu_files

KERNEL_KEYS = ("processor", "BogoMIPS", "Features", "CPU implementer", "CPU architecture",
               "CPU variant", "CPU part", "CPU revision")


@pytest.mark.parametrize("arch, part, architecture, feature", [
    ("aarch64", "0xd0b", "8", "asimd"),   # Cortex-A76
    ("armv7l", "0xc07", "7", "neon"),     # Cortex-A7
])
def test_cpuinfo_has_a_real_kernels_lines(arch, part, architecture, feature):
    text = cpuinfo_text(arch, 4)
    blocks = [b for b in text.split("\n\n") if b.startswith("processor")]
    assert len(blocks) == 4
    for n, block in enumerate(blocks):
        keys = [re.split(r"\s*:", line)[0] for line in block.splitlines()]
        assert [k for k in keys if k in KERNEL_KEYS] == list(KERNEL_KEYS)
        assert f"processor\t: {n}" in block and f"CPU part\t: {part}" in block
        assert f"CPU architecture: {architecture}" in block and feature in block.split("Features")[1]
        assert "CPU implementer\t: 0x41" in block  # ARM Ltd.


def test_sys_cpu_files_list_the_same_cpus():
    files = sys_cpu_files("aarch64", 4)
    assert files["sys/devices/system/cpu/possible"] == "0-3\n"
    assert files["sys/devices/system/cpu/present"] == "0-3\n"
    assert sum(p.endswith("cpuinfo_max_freq") for p in files) == 4
    assert sys_cpu_files("armv7l", 1)["sys/devices/system/cpu/online"] == "0\n"
    with pytest.raises(ValueError):
        cpuinfo_text("aarch64", 0)
