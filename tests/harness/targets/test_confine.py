"""harness.targets.confine: the confined command's exit status, as a device shell would give it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.targets.confine import Confinement, sandbox_command


@pytest.fixture
def tiny_root(tmp_path: Path) -> Confinement:
    """A root made of the host's /usr (read-only) and an empty /data/local/tmp."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("confinement needs root and util-linux's unshare")
    root = tmp_path / "root"
    for folder in ("proc", "dev", "usr", "data/local/tmp"):
        (root / folder).mkdir(parents=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            (root / name).symlink_to(os.readlink(f"/{name}"))
    return Confinement(root=root, data_dir=root / "data/local/tmp", hostname="qskew-t", binds=(("/usr", "/usr"),))


def _run(conf: Confinement, script: str) -> subprocess.CompletedProcess:
    cmd = sandbox_command(conf, ["/bin/sh", "-c", script])
    return subprocess.run(cmd.argv, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], **cmd.env})


def test_a_program_that_crashes_exits_128_plus_its_signal(tiny_root):
    """The command is not the namespace's PID 1 (which ignores signals it does not handle): a
    program killed by SIGSEGV gives 139 at once, as on a device, instead of running on or hanging."""
    done = _run(tiny_root, "kill -SEGV $$; echo survived")
    assert done.returncode == 128 + 11, (done.returncode, done.stdout, done.stderr)
    assert "survived" not in done.stdout


def test_the_commands_own_exit_status_is_handed_on(tiny_root):
    assert _run(tiny_root, "exit 7").returncode == 7
    assert _run(tiny_root, "echo ok").stdout == "ok\n"
