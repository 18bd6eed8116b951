"""Confine a device's commands to its own root: a private mount namespace and a chroot.

Both kinds of qskew's own devices use this: the emulated ARM boards (``harness.targets.board``,
whose root is a Debian ARM file system) and the default simulated ADB device
(``harness.targets.simulate.host_root``, whose root is its own folder with this host's Python
mounted read-only). A :class:`Confinement` says what the root is made of; :func:`sandbox_command`
turns an argv into the host argv that runs it there::

    unshare [--user --map-root-user] --mount --pid --fork --kill-child --uts --propagation private \\
        /bin/sh -c SETUP MARK ROOT DATA_DIR HOSTNAME [PRELUDE ARGS] N SRC1 DST1 ... SRCN DSTN \\
        [PREFIX...] /usr/bin/env -i -C CWD VAR=... ARGV...

SETUP (host ``sh``, inside the new namespaces):

1. runs the confinement's PRELUDE (a board registers its qemu with binfmt_misc there);
2. bind-mounts ROOT onto itself and DATA_DIR (a host folder) over ``ROOT/data/local/tmp``, then
   remounts ROOT read-only: ``/data/local/tmp`` is the only writable place;
3. mounts a fresh ``/proc`` (its own PID namespace: only the device's processes; ``/proc/sys`` and
   ``/proc/sysrq-trigger`` read-only) and a small read-only ``/dev`` holding null, zero, full,
   random, urandom and tty;
4. bind-mounts each host path SRC read-only at DST inside the root (the device's Python, /usr,
   a board's /system and ARM cpuinfo), sets the hostname, ``chroot``s into ROOT and starts the
   command with a clean environment (after PREFIX, e.g. ``setpriv`` dropping every capability).

``--kill-child`` ties the device's PID 1 to ``unshare``: killing unshare's process group kills
every process of the device. As root, the namespaces are made directly; as another user the command
first enters a new user namespace in which it is root (``--user --map-root-user``), which most
kernels allow. Where neither works, :func:`check_namespaces` (or the setup's first line) raises one
error that says which and what to do. A setup step that fails exits with :data:`SETUP_EXIT` and one
``MARK`` line naming it; :func:`setup_failure` turns that into the confinement's error type.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import QskewError
from harness.targets.process import CommandResult

SETUP_EXIT = 125  # the exit code of a failed setup step (env/chroot use 125-127 likewise)
DATA_MOUNT = "/data/local/tmp"  # the only writable folder inside a confined root
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
USERNS_FILES = ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces")
TOOL_PACKAGES = {"unshare": "util-linux", "nsenter": "util-linux", "setpriv": "util-linux",
                 "chroot": "coreutils", "mount": "mount"}

COMMON_HEAD = r"""
fail() { echo "$mark $*" >&2; exit 125; }
mark=$1 root=$2 data=$3 name=$4; shift 4
"""
COMMON_BODY = r"""
nbind=$1; shift
mount --bind "$root" "$root" && mount --bind "$data" "$root/data/local/tmp" \
  && mount -o remount,bind,ro "$root" || fail "cannot bind-mount the device root $root"
mount -t proc proc "$root/proc" || fail "cannot mount /proc in $root"
for ro in sys sysrq-trigger; do
  [ ! -e "$root/proc/$ro" ] || { mount --bind "$root/proc/$ro" "$root/proc/$ro" \
    && mount -o remount,bind,ro "$root/proc/$ro"; } || fail "cannot make /proc/$ro read-only in $root"
done
mount -t tmpfs -o mode=755,size=64k,nosuid,nodev,noexec tmpfs "$root/dev" || fail "cannot mount $root/dev"
for node in null zero full random urandom tty; do
  : > "$root/dev/$node" && mount --bind "/dev/$node" "$root/dev/$node" || fail "cannot bind /dev/$node"
done
mount -o remount,bind,ro,nosuid,nodev,noexec "$root/dev" || fail "cannot make $root/dev read-only"
while [ "$nbind" -gt 0 ]; do
  src=$1 dst=$2; shift 2; nbind=$((nbind - 1))
  mount --bind "$src" "$root$dst" && mount -o remount,bind,ro "$root$dst" \
    || fail "cannot bind-mount $src read-only at $dst"
done
hostname "$name" 2>/dev/null || { echo "$name" > /proc/sys/kernel/hostname; } 2>/dev/null || true
"""
# A session's init must itself be the chrooted PID 1 (commands join its namespaces and root).
INIT_TAIL = 'exec chroot "$root" "$@"\n'
# A one-shot command must not be PID 1, which no signal it does not handle can end: a program that
# crashes (qemu re-raises SIGSEGV) would run on or hang until the timeout instead of exiting 128+N
# as on a device. The setup shell stays PID 1 and hands on the command's status.
COMMAND_TAIL = 'chroot "$root" "$@"\nexit $?\n'



class SandboxError(QskewError):
    """A device's confinement cannot be set up (no namespaces, a missing tool, a failed mount)."""


@dataclass(frozen=True)
class SandboxCommand:
    """A confined command as the host runs it: ``argv`` and the variables to add to the host env."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Confinement:
    """What a confined device's ``/`` is made of.

    ``root`` becomes ``/`` (read-only; it must hold the mount points ``proc``, ``dev``,
    ``data/local/tmp`` and every ``binds`` target), ``data_dir`` its writable /data/local/tmp,
    ``binds`` the host paths mounted read-only inside it (``(source, target)``, target absolute),
    ``env`` the environment every command starts with, ``prefix`` an argv run before ``env -i``
    inside the root, ``prelude``/``prelude_args`` setup code run first (its ``$1``...), ``mark`` the
    prefix of a failed step's line, ``error`` the error type raised, ``user_ns`` whether to make a
    user namespace first (None: when not root).
    """

    root: Path
    data_dir: Path
    hostname: str
    binds: tuple[tuple[str, str], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()
    prelude: str = ""
    prelude_args: tuple[str, ...] = ()
    mark: str = "qskew-sandbox:"
    error: type = SandboxError
    user_ns: bool | None = None

    @property
    def in_user_ns(self) -> bool:
        return os.geteuid() != 0 if self.user_ns is None else self.user_ns

    def script(self, as_init: bool = False) -> str:
        """The host ``sh`` script that sets the root up and enters it (see the module docstring);
        ``as_init``: the command replaces the shell as the namespace's PID 1 (a session's init)."""
        return COMMON_HEAD + self.prelude + COMMON_BODY + (INIT_TAIL if as_init else COMMAND_TAIL)

    def inner(self, argv: Sequence[str], cwd: str, env: Mapping[str, str] | None) -> list[str]:
        """The argv run inside the root: PREFIX, then ``env -i -C cwd VARS... argv``."""
        if not argv:
            raise self.error("nothing to run in the confined device: empty argv")
        variables = {**self.env, **(env or {})}
        return [*self.prefix, "/usr/bin/env", "-i", "-C", cwd, *(f"{k}={v}" for k, v in variables.items()),
                *argv]


def unshare_flags(user_ns: bool) -> list[str]:
    """unshare's options: the namespaces a confined device gets (and a user namespace off root)."""
    user = ["--user", "--map-root-user"] if user_ns else []
    return ["unshare", *user, "--mount", "--pid", "--fork", "--kill-child", "--uts", "--propagation",
            "private"]


def sandbox_command(conf: Confinement, argv: Sequence[str], *, cwd: str = DATA_MOUNT,
                    env: Mapping[str, str] | None = None, as_init: bool = False) -> SandboxCommand:
    """The host argv that runs ``argv`` confined by ``conf``, in namespaces of its own (as their
    PID 1 with ``as_init``, else as a child of the setup shell, which exits with its status)."""
    inner = conf.inner(argv, cwd, env)
    binds = [part for pair in conf.binds for part in pair]
    outer = [*unshare_flags(conf.in_user_ns), "/bin/sh", "-c", conf.script(as_init), conf.mark.rstrip(":"),
             conf.mark, str(conf.root), str(Path(conf.data_dir).resolve()), conf.hostname,
             *conf.prelude_args, str(len(conf.binds)), *binds]
    return SandboxCommand(tuple(outer + inner), {"LC_ALL": "C"})


def require_tool(name: str, why: str, error: type = SandboxError) -> str:
    """The full path of host tool ``name``; else ``error`` naming the Debian package that has it."""
    found = shutil.which(name, path=os.environ.get("PATH"))
    if found is None:
        package = TOOL_PACKAGES.get(name, name)
        raise error(f"{name} not found on PATH ({why}): install Debian's {package} "
                    f"(apt-get install -y {package})")
    return found


def check_namespaces(what: str, error: type = SandboxError) -> None:
    """Fail with one line naming the fix if this host cannot make the namespaces ``what`` needs."""
    require_tool("unshare", f"it makes the private namespaces of {what}", error)
    require_tool("nsenter", f"it enters {what}", error)
    require_tool("chroot", f"it makes the device root the / of {what}", error)
    if os.geteuid() == 0:
        return
    for path in USERNS_FILES:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value == "0":
            raise error(f"{what} runs confined (private mount namespace and chroot), and as a user other "
                        f"than root that needs user namespaces, which this kernel turns off ({path} is 0): "
                        f"run `sysctl -w {path[len('/proc/sys/'):].replace('/', '.')}=1` as root, or run "
                        f"qskew as root")


def setup_failure(done: CommandResult, mark: str, error: type = SandboxError, what: str = "sandbox") \
        -> QskewError | None:
    """The error of a failed setup step (or of unshare itself), or None if the setup went through."""
    if done.returncode not in (SETUP_EXIT, 1):
        return None
    stderr = done.stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(mark)]
    if lines and done.returncode == SETUP_EXIT:
        return error(f"{what} setup failed: {lines[-1]}")
    unshare = [ln for ln in stderr.splitlines() if ln.startswith("unshare:")]
    if unshare:
        return error(f"{what} setup failed: {unshare[-1]} (Linux namespaces are not available here: "
                     f"run as root, or in a container with CAP_SYS_ADMIN, or enable user namespaces)")
    return None
