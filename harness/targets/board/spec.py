"""What a board is made of: its architecture profile, its Debian packages, its runtime, its cache key.

A board is named by content: the architecture, the Python version, the runtime's pip spec and the
numpy spec (a pip spec, or ``debian`` for Debian's own ``python3-numpy`` of that architecture, the
only numpy there is for armv7l). Two builds of the same :class:`BoardSpec` give the same folder.

This module is pure (no processes, no files), so the package lists and keys are unit-tested alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from harness.errors import QskewError

# Bump when the layout of a built board changes, so old cached boards are not reused.
BOARD_FORMAT = 2  # 2: /sys/devices/system/cpu files for cpuinfo
DEFAULT_PYTHON = "3.11"  # Debian 12 (bookworm) ships python3.11 for every architecture
NUMPY_FROM_DEBIAN = "debian"  # numpy spec meaning: Debian's python3-numpy for the board's architecture
# Where the runtime's wheels are installed inside the root: Debian's site.py puts it on sys.path.
SITE_DIR = "usr/local/lib/python{python}/dist-packages"
DATA_DIR = "data/local/tmp"  # the device's one writable folder, as on Android


class BoardError(QskewError):
    """A board cannot be built or entered; the message names what is missing and what fixes it."""


@dataclass(frozen=True)
class ArchProfile:
    """How one ARM architecture maps onto Debian, qemu and pip."""

    arch: str             # what ``uname -m`` prints on the board
    deb_arch: str         # Debian's name for it (``apt-get download PKG:deb_arch``)
    triple: str           # the multiarch library folder (/usr/lib/<triple>)
    qemu: str             # the qemu-user binary the binfmt_misc entry points at
    binfmt: str           # the binfmt_misc entry's name (/proc/sys/fs/binfmt_misc/<binfmt>)
    qemu_cpu: str         # the CPU qemu emulates (QEMU_CPU), matching the generated /proc/cpuinfo
    pip_platforms: tuple[str, ...]  # every platform tag a wheel for it may carry
    default_runtime: str
    default_numpy: str


# Python 3.11 (no "python3" meta package needed: python3-minimal gives /usr/bin/python3) with the
# shared libraries its standard library modules load, a shell and core utilities.
BASE_PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0",
    "liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8", "libdb5.3",
    "libgdbm6", "libnsl2", "libtirpc3", "libcrypt1", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libcom-err2", "libkeyutils1",
    "dash", "coreutils", "libacl1", "libattr1", "libgmp10", "libselinux1", "libpcre2-8-0",
)
ALL_ARCH_PACKAGES = ("media-types",)  # "Architecture: all" packages, fetched without an arch suffix
PYTHON_PACKAGES = ("python{v}-minimal", "libpython{v}-minimal", "libpython{v}-stdlib", "python3-minimal")
# Debian's numpy and the BLAS/LAPACK it links (used where PyPI has no numpy wheel: armv7l).
DEBIAN_NUMPY_PACKAGES = ("python3-numpy", "libblas3", "liblapack3", "libgfortran5")

ARCHES = {
    "aarch64": ArchProfile(
        arch="aarch64", deb_arch="arm64", triple="aarch64-linux-gnu", qemu="qemu-aarch64-static",
        binfmt="qemu-aarch64", qemu_cpu="cortex-a76",
        pip_platforms=("manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_27_aarch64",
                       "manylinux_2_28_aarch64", "manylinux_2_34_aarch64", "manylinux_2_35_aarch64"),
        default_runtime="ai-edge-litert==2.3.0", default_numpy="numpy<2.3"),
    # ai-edge-litert ships no armv7 wheel; tflite-runtime 2.14.0 is the newest release that does
    # (manylinux_2_34_armv7l, cp39 and cp311; bookworm's glibc 2.36 is new enough).
    "armv7l": ArchProfile(
        arch="armv7l", deb_arch="armhf", triple="arm-linux-gnueabihf", qemu="qemu-arm-static",
        binfmt="qemu-arm", qemu_cpu="cortex-a7",
        pip_platforms=("manylinux_2_17_armv7l", "manylinux2014_armv7l", "manylinux_2_31_armv7l",
                       "manylinux_2_34_armv7l", "manylinux_2_35_armv7l"),
        default_runtime="tflite-runtime==2.14.0", default_numpy=NUMPY_FROM_DEBIAN),
}


def arch_profile(arch: str) -> ArchProfile:
    """The profile of ``arch``; an unknown name fails naming the known ones."""
    try:
        return ARCHES[arch]
    except KeyError:
        raise BoardError(f"unknown board architecture {arch!r}; known: {', '.join(ARCHES)}") from None


@dataclass(frozen=True)
class BoardSpec:
    """Everything a board's content depends on (and so its cache key)."""

    arch: str
    python: str = DEFAULT_PYTHON
    runtime: str = ""   # pip spec; "" means the architecture's default
    numpy: str = ""     # pip spec or "debian"; "" means the architecture's default

    def __post_init__(self):
        profile = arch_profile(self.arch)
        if not re.fullmatch(r"3\.\d+", self.python):
            raise BoardError(f"board Python version {self.python!r} is not of the form 3.N (e.g. 3.11)")
        object.__setattr__(self, "runtime", self.runtime or profile.default_runtime)
        object.__setattr__(self, "numpy", self.numpy or profile.default_numpy)

    @property
    def profile(self) -> ArchProfile:
        return ARCHES[self.arch]

    @property
    def site_dir(self) -> str:
        """The runtime's install folder, relative to the root."""
        return SITE_DIR.format(python=self.python)

    def cache_key(self) -> str:
        """A short hash of the content: same spec, same key, same board folder."""
        content = [BOARD_FORMAT, self.arch, self.python, self.runtime, self.numpy]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]

    def folder_name(self) -> str:
        """The board's folder under the cache: readable prefix, content hash."""
        return f"{self.arch}-py{self.python}-{self.cache_key()}"

    def packages(self) -> tuple[str, ...]:
        """The Debian packages of the root, each as ``NAME:DEBARCH`` for ``apt-get download``."""
        names = list(BASE_PACKAGES) + [p.format(v=self.python) for p in PYTHON_PACKAGES]
        if self.numpy == NUMPY_FROM_DEBIAN:
            names += DEBIAN_NUMPY_PACKAGES
        return tuple(f"{n}:{self.profile.deb_arch}" for n in names) + ALL_ARCH_PACKAGES

    def pip_requirements(self) -> tuple[str, ...]:
        """What pip fetches for the board: the runtime, and numpy unless Debian's is used."""
        return (self.runtime,) if self.numpy == NUMPY_FROM_DEBIAN else (self.runtime, self.numpy)

    def pip_platform_args(self) -> tuple[str, ...]:
        """The pip options that select wheels for the board, not for the host."""
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python]
        for tag in self.profile.pip_platforms:
            args += ["--platform", tag]
        if self.numpy == NUMPY_FROM_DEBIAN:
            args.append("--no-deps")  # the runtime's numpy dependency is met by Debian's package
        return tuple(args)


def deb_file_version(filename: str) -> tuple[str, str]:
    """(package, version) from a .deb file name as apt-get download writes it.

    >>> deb_file_version("libssl3_3.0.17-1~deb12u2_arm64.deb")
    ('libssl3', '3.0.17-1~deb12u2')
    >>> deb_file_version("python3-numpy_1%3a1.24.2-1_armhf.deb")
    ('python3-numpy', '1:1.24.2-1')
    """
    stem = filename[:-len(".deb")] if filename.endswith(".deb") else filename
    parts = stem.split("_")
    if len(parts) != 3:
        raise BoardError(f"unexpected .deb file name {filename!r} (expected NAME_VERSION_ARCH.deb)")
    return parts[0], parts[1].replace("%3a", ":").replace("%3A", ":")


def wheel_file_version(filename: str) -> tuple[str, str]:
    """(distribution, version) from a wheel file name.

    >>> wheel_file_version("ai_edge_litert-2.3.0-cp311-cp311-manylinux_2_27_aarch64.whl")
    ('ai_edge_litert', '2.3.0')
    """
    parts = filename.split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise BoardError(f"unexpected wheel file name {filename!r}")
    return parts[0], parts[1]
