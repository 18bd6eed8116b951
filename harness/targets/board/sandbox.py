"""Run a command inside a board as a whole ARM system: ``/`` is the board root, nothing of the host.

The namespaces, mounts and chroot are the common confinement of qskew's devices
(``harness.targets.confine``, whose docstring shows the host argv); a board adds to it:

1. a prelude that mounts binfmt_misc if it is not mounted, and registers Debian's qemu entry for
   the architecture (``/usr/lib/binfmt.d/qemu-<arch>.conf``) only when
   ``/proc/sys/fs/binfmt_misc/qemu-<arch>`` is absent; the entry is kernel-wide and stays (it is
   what ``systemd-binfmt`` would register), and nobody else's entry is touched. Its ``F`` flag makes
   the kernel open qemu at registration, so ARM programs run inside the chroot with no qemu binary
   in it, and an ARM shell starts ARM programs;
2. its ARM ``cpuinfo`` over ``/proc/cpuinfo`` (LiteRT's cpuinfo library crashes on the host's x86
   file) and, for a simulated device, its storage's ``system`` folder read-only at ``/system``;
3. ``QEMU_CPU`` in every command's environment, so qemu emulates the core the cpuinfo describes
   (Cortex-A76 / Cortex-A7), and the hostname ``qskew-<arch>``.

As for every confined device, ``/data/local/tmp`` (the device's storage ``DATA_DIR``, a host
folder) is the only writable place.

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
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import CommandTimeout
from harness.targets import confine
from harness.targets.board import host
from harness.targets.board.build import Board
from harness.targets.board.spec import DATA_DIR, BoardError
from harness.targets.confine import SETUP_EXIT, Confinement, SandboxCommand
from harness.targets.process import CommandResult, run_command

__all__ = ["BOARD_ENV", "DATA_MOUNT", "SETUP_EXIT", "SETUP_SCRIPT", "SYSTEM_MOUNT", "SandboxCommand",
           "board_confinement", "run_in_board", "sandbox_command", "setup_failure"]
SETUP_MARK = "qskew-board:"  # prefix of the one stderr line a failed setup step prints
DATA_MOUNT = "/" + DATA_DIR
SYSTEM_MOUNT = "system"  # where sandbox_command(system_dir=...) appears in the board, read-only
# The environment every board command starts with (Android's shell has these too).
BOARD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": DATA_MOUNT, "TMPDIR": DATA_MOUNT,
             "LANG": "C.UTF-8"}

# The board's prelude to the common setup (harness.targets.confine): register qemu with binfmt_misc.
BINFMT_PRELUDE = r"""
conf=$1 entry=$2; shift 2
bm=/proc/sys/fs/binfmt_misc
[ -e "$bm/register" ] || mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null \
  || fail "binfmt_misc cannot be mounted at $bm (kernel without CONFIG_BINFMT_MISC, or a container without CAP_SYS_ADMIN): load it with 'modprobe binfmt_misc' or run .ci/board-setup on the host"
if [ ! -e "$bm/$entry" ]; then
  grep -v '^#' "$conf" > "$bm/register" 2>/dev/null || [ -e "$bm/$entry" ] \
    || fail "cannot register $conf with binfmt_misc: register it on the host (.ci/board-setup)"
fi
"""
SETUP_SCRIPT = confine.COMMON_HEAD + BINFMT_PRELUDE + confine.COMMON_BODY + confine.COMMAND_TAIL  # a one-shot command


def board_confinement(board: Board, data_dir: Path, system_dir: Path | None = None) -> Confinement:
    """What the board's ``/`` is made of: its root, ``data_dir`` at /data/local/tmp, its ARM cpuinfo
    over /proc/cpuinfo and ``system_dir`` (if given) read-only at /system."""
    profile = board.spec.profile
    binds = [(str(board.cpuinfo), "/proc/cpuinfo")]
    system = _system_mount(board, system_dir)
    if system:
        binds.append((system, "/" + SYSTEM_MOUNT))
    return Confinement(root=board.root, data_dir=Path(data_dir), hostname=f"qskew-{profile.arch}",
                       binds=tuple(binds), env={**BOARD_ENV, "QEMU_CPU": profile.qemu_cpu},
                       prelude=BINFMT_PRELUDE, prelude_args=(host.binfmt_conf(profile), profile.binfmt),
                       mark=SETUP_MARK, error=BoardError, user_ns=False)


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
    require_board_host(board, check_root)
    if system_dir is not None:
        make_system_point(board)
    return confine.sandbox_command(board_confinement(board, data_dir, system_dir), argv, cwd=cwd, env=env)


def require_board_host(board: Board, check_root: bool = True) -> None:
    """Fail unless this host can enter ``board``: root, unshare, chroot and the board's qemu."""
    if check_root and os.geteuid() != 0:
        raise BoardError("the board sandbox needs root (a private mount namespace, binfmt_misc and "
                         "chroot): run qskew as root, or in a container with CAP_SYS_ADMIN")
    for tool, why in (("unshare", "it makes the private namespaces"), ("chroot", "it enters the board")):
        host.require_tool(tool, why)
    host.require_qemu(board.spec.profile)


def _system_mount(board: Board, system_dir: Path | None) -> str:
    """The host folder to mount at /system ("" for none)."""
    return "" if system_dir is None else str(Path(system_dir).resolve())


def make_system_point(board: Board) -> None:
    """Boards built before /system was a mount point get the empty folder now (it changes nothing a
    board's content key covers)."""
    if board.root.is_dir():
        (board.root / SYSTEM_MOUNT).mkdir(exist_ok=True)


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
    return confine.setup_failure(done, SETUP_MARK, BoardError, "board sandbox")
