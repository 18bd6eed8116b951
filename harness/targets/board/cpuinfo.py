"""An ARM ``/proc/cpuinfo`` for a board, bind-mounted over the kernel's x86 one inside the sandbox.

Why: LiteRT's cpuinfo library parses ``/proc/cpuinfo`` to pick its kernels; under qemu-user it
reads the host's x86 file and the interpreter dies with "qemu: uncaught target signal 11". The text
below is the layout real kernels print: aarch64 as on a Cortex-A76 (Raspberry Pi 5 class) core,
armv7l as on a Cortex-A7 (Raspberry Pi 2 class) core; the same core is what qemu emulates
(``ArchProfile.qemu_cpu``), so the features listed are the features the board really has.
"""

from __future__ import annotations

from harness.targets.board.spec import arch_profile

# One processor block per CPU, as the kernel prints it ("\t: " after each key but the architecture).
_BLOCKS = {
    "aarch64": ("processor\t: {n}\n"
                "BogoMIPS\t: 108.00\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                "asimdrdm lrcpc dcpop asimddp\n"
                "CPU implementer\t: 0x41\n"
                "CPU architecture: 8\n"
                "CPU variant\t: 0x4\n"
                "CPU part\t: 0xd0b\n"
                "CPU revision\t: 1\n"),
    "armv7l": ("processor\t: {n}\n"
               "model name\t: ARMv7 Processor rev 5 (v7l)\n"
               "BogoMIPS\t: 38.40\n"
               "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 "
               "lpae evtstrm\n"
               "CPU implementer\t: 0x41\n"
               "CPU architecture: 7\n"
               "CPU variant\t: 0x0\n"
               "CPU part\t: 0xc07\n"
               "CPU revision\t: 5\n"),
}
# Lines after the processor blocks (32-bit kernels name the SoC there).
_TRAILERS = {"aarch64": "", "armv7l": "Hardware\t: BCM2835\nRevision\t: a01041\n"}
CPU_MODELS = {"aarch64": "ARM Cortex-A76", "armv7l": "ARM Cortex-A7"}  # what `devices check` shows
MAX_FREQ_KHZ = {"aarch64": 2400000, "armv7l": 900000}  # the reference boards' top clock
SYS_CPU = "sys/devices/system/cpu"  # where cpuinfo reads which CPUs exist (no sysfs in a board)


def cpuinfo_text(arch: str, n_cpus: int) -> str:
    """The ``/proc/cpuinfo`` of an ``arch`` board with ``n_cpus`` cores.

    >>> print(cpuinfo_text("aarch64", 1).splitlines()[4])
    CPU architecture: 8
    """
    arch_profile(arch)  # fails helpfully on an unknown architecture
    if n_cpus < 1:
        raise ValueError(f"a board has at least one CPU, not {n_cpus}")
    blocks = [_BLOCKS[arch].format(n=n) for n in range(n_cpus)]
    trailer = _TRAILERS[arch]
    return "\n".join(blocks) + ("\n" + trailer if trailer else "")


def sys_cpu_files(arch: str, n_cpus: int) -> dict[str, str]:
    """The files of /sys/devices/system/cpu that cpuinfo reads, as {path under the root: text}.

    Why: without ``possible``/``present`` LiteRT's cpuinfo fails to initialise ("failed to parse the
    list of possible processors"), and XNNPACK then silently declines every graph.

    >>> sys_cpu_files("aarch64", 2)["sys/devices/system/cpu/possible"]
    '0-1\\n'
    """
    arch_profile(arch)
    span = f"0-{n_cpus - 1}\n" if n_cpus > 1 else "0\n"
    files = {f"{SYS_CPU}/{name}": span for name in ("possible", "present", "online")}
    for n in range(n_cpus):
        files[f"{SYS_CPU}/cpu{n}/cpufreq/cpuinfo_max_freq"] = f"{MAX_FREQ_KHZ[arch]}\n"
    return files
