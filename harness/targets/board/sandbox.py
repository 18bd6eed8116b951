"""Run a command inside a board as a whole ARM system: ``/`` is the board root, nothing of the host.

:func:`sandbox_command` turns an argv meant for the board into the host argv that runs it::

    unshare --mount --pid --fork --kill-child --uts --propagation private /bin/sh -c SETUP qskew-board \\
        ROOT CPUINFO DATA_DIR BINFMT_CONF BINFMT_ENTRY HOSTNAME \\
        /usr/bin/env -i -C CWD PATH=... QEMU_CPU=... ARGV...

SETUP (host ``sh``, inside the new namespaces) then:

1. mounts binfmt_misc if it is not mounted, and registers Debian's qemu entry for the architecture
   (``/usr/lib/binfmt.d/qemu-<arch>.conf``) only when ``/proc/sys/fs/binfmt_misc/qemu-<arch>`` is
   absent; the entry is kernel-wide and stays (it is what ``systemd-binfmt`` would register), and
   nobody else's entry is touched. Its ``F`` flag makes the kernel open qemu at registration, so ARM
   programs run inside the chroot with no qemu binary in it, and an ARM shell starts ARM programs;
2. bind-mounts the root onto itself, the device's storage ``DATA_DIR`` (a host folder) over
   ``/data/local/tmp``, then remounts the root read-only: ``/data/local/tmp`` is the only writable
   place;
3. mounts a fresh ``/proc`` (its own PID namespace: only the board's processes) with the board's
   ARM ``cpuinfo`` over ``/proc/cpuinfo`` (LiteRT's cpuinfo library crashes on the host's x86 file),
   a small ``/dev`` with null, zero, full, random, urandom and tty, and sets the hostname;
4. ``chroot``s into the root and starts the command with a clean environment. ``QEMU_CPU`` makes
   qemu emulate the core the cpuinfo describes (Cortex-A76 / Cortex-A7).

``--kill-child`` ties the board's PID 1 to ``unshare``: when :func:`run_command` kills the process
group on a timeout, every board process dies with it, even one that made its own process group
(coreutils ``timeout`` does) or hangs inside qemu.

Needs root (mount namespaces, binfmt_misc registration, chroot): as another user
:func:`sandbox_command` raises :class:`BoardError` saying so, since ``unshare -rm`` would map to root
in a user namespace but cannot register binfmt_misc entries on kernels before 6.7 nor mount
``/proc`` without owning a PID namespace. A setup step that fails (no binfmt_misc in the kernel,
no namespaces in a container) exits with :data:`SETUP_EXIT` and one ``qskew-board:`` line naming
it; :func:`setup_failure` turns that into a BoardError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import CommandTimeout
from harness.targets.board import host
from harness.targets.board.build import Board
from harness.targets.board.spec import DATA_DIR, BoardError
from harness.targets.process import CommandResult, run_command

SETUP_EXIT = 125  # the exit code of a failed sandbox setup step (env/chroot use 125-127 likewise)
SETUP_MARK = "qskew-board:"  # prefix of the one stderr line a failed setup step prints
DATA_MOUNT = "/" + DATA_DIR
SYSTEM_MOUNT = "system"  # where sandbox_command(system_dir=...) appears in the board, read-only
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# The environment every board command starts with (Android's shell has these too).
BOARD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": DATA_MOUNT, "TMPDIR": DATA_MOUNT,
             "LANG": "C.UTF-8"}

SETUP_SCRIPT = r"""
fail() { echo "qskew-board: $*" >&2; exit 125; }
root=$1 cpuinfo=$2 data=$3 conf=$4 entry=$5 name=$6 system=$7; shift 7
bm=/proc/sys/fs/binfmt_misc
[ -e "$bm/register" ] || mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null \
  || fail "binfmt_misc cannot be mounted at $bm (kernel without CONFIG_BINFMT_MISC, or a container without CAP_SYS_ADMIN): load it with 'modprobe binfmt_misc' or run .ci/board-setup on the host"
if [ ! -e "$bm/$entry" ]; then
  grep -v '^#' "$conf" > "$bm/register" 2>/dev/null || [ -e "$bm/$entry" ] \
    || fail "cannot register $conf with binfmt_misc: register it on the host (.ci/board-setup)"
fi
mount --bind "$root" "$root" && mount --bind "$data" "$root/data/local/tmp" \
  && mount -o remount,bind,ro "$root" || fail "cannot bind-mount the board root $root"
if [ -n "$system" ]; then
  mount --bind "$system" "$root/system" && mount -o remount,bind,ro "$root/system" \
    || fail "cannot bind-mount the device's system folder $system at /system"
fi
mount -t proc proc "$root/proc" && mount --bind "$cpuinfo" "$root/proc/cpuinfo" \
  || fail "cannot mount /proc and the ARM cpuinfo in $root"
mount -t tmpfs -o mode=755,size=64k,nosuid tmpfs "$root/dev" || fail "cannot mount $root/dev"
for node in null zero full random urandom tty; do
  : > "$root/dev/$node" && mount --bind "/dev/$node" "$root/dev/$node" || fail "cannot bind /dev/$node"
done
echo "$name" > /proc/sys/kernel/hostname 2>/dev/null || true
exec chroot "$root" "$@"
"""


@dataclass(frozen=True)
class SandboxCommand:
    """A board command as the host runs it: ``argv`` and the variables to add to the host env."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


def sandbox_command(board: Board, argv: Sequence[str], data_dir: Path, *, cwd: str = DATA_MOUNT,
                    env: Mapping[str, str] | None = None, check_root: bool = True,
                    system_dir: Path | None = None) -> SandboxCommand:
    """The host argv that runs ``argv`` inside ``board`` with ``data_dir`` as /data/local/tmp (and
    ``system_dir``, if given, read-only at /system: a simulated device's getprop and launchers).

    Example::

        cmd = sandbox_command(board, ["uname", "-m"], Path("/tmp/dev0"))
        run_command(cmd.argv, timeout_s=60, env=cmd.env).stdout   # 'aarch64\\n'
    """
    if not argv:
        raise BoardError("nothing to run in the board: empty argv")
    if check_root and os.geteuid() != 0:
        raise BoardError("the board sandbox needs root (a private mount namespace, binfmt_misc and "
                         "chroot): run qskew as root, or in a container with CAP_SYS_ADMIN")
    profile = board.spec.profile
    for tool, why in (("unshare", "it makes the private namespaces"), ("chroot", "it enters the board")):
        host.require_tool(tool, why)
    host.require_qemu(profile)
    variables = {**BOARD_ENV, "QEMU_CPU": profile.qemu_cpu, **(env or {})}
    inner = ["/usr/bin/env", "-i", "-C", cwd, *(f"{k}={v}" for k, v in variables.items()), *argv]
    outer = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--uts", "--propagation", "private",
             "/bin/sh", "-c", SETUP_SCRIPT, "qskew-board", str(board.root), str(board.cpuinfo),
             str(Path(data_dir).resolve()), host.binfmt_conf(profile), profile.binfmt,
             f"qskew-{profile.arch}", _system_mount(board, system_dir)]
    return SandboxCommand(tuple(outer + inner), {"LC_ALL": "C"})


def _system_mount(board: Board, system_dir: Path | None) -> str:
    """The host folder to mount at /system ("" for none); boards built before /system was a mount
    point get the empty folder now (it changes nothing a board's content key covers)."""
    if system_dir is None:
        return ""
    (board.root / SYSTEM_MOUNT).mkdir(exist_ok=True)
    return str(Path(system_dir).resolve())


def run_in_board(board: Board, argv: Sequence[str], data_dir: Path, timeout_s: float, *,
                 cwd: str = DATA_MOUNT, env: Mapping[str, str] | None = None,
                 stdin_bytes: bytes | None = None) -> CommandResult:
    """Run ``argv`` in the board (through :func:`run_command`); a failed sandbox setup raises."""
    cmd = sandbox_command(board, argv, data_dir, cwd=cwd, env=env)
    device = f"board-{board.spec.arch}"
    try:
        done = run_command(cmd.argv, timeout_s=timeout_s, env=cmd.env, device=device, stdin_bytes=stdin_bytes)
    except CommandTimeout as exc:  # name the board command, not the sandbox's setup script
        raise CommandTimeout(list(argv), timeout_s, exc.output, device) from exc
    failure = setup_failure(done)
    if failure is not None:
        raise failure
    return done


def setup_failure(done: CommandResult) -> BoardError | None:
    """The BoardError of a failed sandbox setup step, or None if the setup went through."""
    if done.returncode != SETUP_EXIT:
        return None
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith(SETUP_MARK)]
    if not lines and "unshare:" not in done.stderr:
        return None  # the command itself exited 125
    return BoardError(f"board sandbox setup failed: {(lines or done.stderr.strip().splitlines())[-1]}")
