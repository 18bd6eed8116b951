"""Checks of the host a board needs, each failing with one line that names the fix.

A board needs Debian's tools (``apt-get``, ``dpkg``), the board architecture enabled in dpkg (so
``apt-get download PKG:arm64`` finds packages), qemu-user (Debian's ``qemu-user-static``, whose
binfmt_misc entries run ARM programs) and pip for the runtime's wheels.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

from harness.targets.board.spec import ArchProfile, BoardError
from harness.targets.process import run_command

DPKG_QUERY_TIMEOUT_S = 30.0  # dpkg --print-architecture answers at once; a hang means a broken dpkg
BINFMT_CONF_DIR = "/usr/lib/binfmt.d"  # where qemu-user-static installs its binfmt_misc entries
# The Debian package that provides each host tool a board needs.
TOOL_PACKAGES = {"apt-get": "apt", "dpkg": "dpkg", "unshare": "util-linux", "nsenter": "util-linux", "chroot": "coreutils",
                 "mount": "mount", "qemu-aarch64-static": "qemu-user-static",
                 "qemu-arm-static": "qemu-user-static"}


def require_tool(name: str, why: str, path: str | None = None) -> str:
    """The full path of host tool ``name`` on PATH (or ``path``); else a BoardError naming its package."""
    found = shutil.which(name, path=path if path is not None else os.environ.get("PATH"))
    if found is None:
        package = TOOL_PACKAGES.get(name, name)
        raise BoardError(f"{name} not found on PATH ({why}): install Debian's {package} "
                         f"(apt-get install -y {package})")
    return found


def require_qemu(profile: ArchProfile, path: str | None = None) -> str:
    """qemu-user for the board's architecture, and the binfmt_misc entry file Debian ships with it."""
    found = require_tool(profile.qemu, f"it runs {profile.arch} programs", path)
    conf = binfmt_conf(profile)
    if not os.path.isfile(conf):
        raise BoardError(f"{conf} is missing (the binfmt_misc entry for {profile.qemu}): reinstall "
                         f"Debian's qemu-user-static (apt-get install --reinstall -y qemu-user-static)")
    return found


def binfmt_conf(profile: ArchProfile) -> str:
    """Debian's binfmt_misc entry for the architecture (its ``F`` flag needs no qemu in the root)."""
    return os.path.join(BINFMT_CONF_DIR, profile.binfmt + ".conf")


def require_dpkg_arch(profile: ArchProfile) -> None:
    """Fail unless dpkg has the board's architecture (native or added with --add-architecture)."""
    require_tool("dpkg", "it unpacks the board's packages")
    native = run_command(["dpkg", "--print-architecture"], timeout_s=DPKG_QUERY_TIMEOUT_S).stdout.split()
    foreign = run_command(["dpkg", "--print-foreign-architectures"],
                          timeout_s=DPKG_QUERY_TIMEOUT_S).stdout.split()
    if profile.deb_arch not in native + foreign:
        raise BoardError(arch_not_enabled_message(profile))


def arch_not_enabled_message(profile: ArchProfile) -> str:
    d = profile.deb_arch
    return (f"Debian architecture {d} is not enabled, so apt cannot fetch {profile.arch} packages: run "
            f"`dpkg --add-architecture {d} && apt-get update` as root (.ci/board-setup does it)")


def require_pip() -> list[str]:
    """The argv prefix of the pip that fetches the board's wheels (this Python's)."""
    probe = run_command([sys.executable, "-m", "pip", "--version"], timeout_s=60.0)
    if probe.returncode != 0:
        raise BoardError(f"pip is not available to {sys.executable} (it fetches the board's wheels): "
                         f"install Debian's python3-pip or run `{sys.executable} -m ensurepip`")
    return [sys.executable, "-m", "pip"]


def apt_error(stderr: str, packages: tuple[str, ...], profile: ArchProfile) -> BoardError:
    """One BoardError for a failed ``apt-get download``, naming the package apt could not fetch."""
    errors = [line[3:].strip() for line in stderr.splitlines() if line.startswith("E: ")]
    first = errors[0] if errors else (stderr.strip().splitlines() or ["no output"])[-1]
    missing = re.search(r"(?:Unable to locate package|for package|package) '?([\w.+-]+:\w+|[\w.+-]+)'?",
                        first)
    named = missing.group(1) if missing else ", ".join(packages)
    hint = (f"`dpkg --add-architecture {profile.deb_arch} && apt-get update` as root, then check the "
            f"package exists in Debian bookworm for {profile.deb_arch}")
    return BoardError(f"apt-get download failed for {named}: {first} (run {hint})")


def pip_error(output: str, requirements: tuple[str, ...], platforms: tuple[str, ...],
              python: str) -> BoardError:
    """One BoardError for a failed pip download: which requirement has no wheel for the platform."""
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        return BoardError(f"pip found no wheel of {missing.group(1)} for CPython {python} on "
                          f"{' / '.join(platforms)}: pick a runtime version that ships one "
                          f"(qskew board build --runtime SPEC)")
    last = (output.strip().splitlines() or ["no output"])[-1]
    return BoardError(f"pip download of {' '.join(requirements)} for the board failed: {last}")
