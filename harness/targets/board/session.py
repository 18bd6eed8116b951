"""One running board that many commands enter: what a simulated ADB device with a board keeps open.

Why: :func:`sandbox.sandbox_command` gives each command its own namespaces, and its board dies with
it (``--kill-child``). A device's shells must share one board, as on a phone: a job started
detached (``setsid``) by one ``adb shell`` keeps running after it, and later shells see it in
``/proc`` by its PID. So a session starts the board once (its PID 1 is a small shell loop that reaps
orphans) and :meth:`BoardSession.command` enters that board's mount, PID and UTS namespaces and its
root with ``nsenter``. :meth:`BoardSession.stop` kills the board's PID 1, and so every process in it.

Example::

    session = BoardSession(board, data_dir, system_dir).start()
    cmd = session.command(["uname", "-m"])
    run_command(cmd.argv, timeout_s=60, env=cmd.env).stdout   # 'aarch64\\n'
    session.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from harness.targets.board import host
from harness.targets.board.build import Board
from harness.targets.board.sandbox import (BOARD_ENV, DATA_MOUNT, SandboxCommand, sandbox_command,
                                           setup_failure)
from harness.targets.board.spec import BoardError
from harness.targets.process import CommandResult

START_TIMEOUT_S = 60.0  # the board's PID 1 is up once it has entered the root (a few seconds)
POLL_S = 0.05
REAP_INTERVAL_S = 2  # how often PID 1 wakes to reap orphans (each wake is one emulated `sleep`)
INIT_SCRIPT = f"trap 'exit 0' TERM; while :; do sleep {REAP_INTERVAL_S}; done"


class BoardSession:
    """A board kept running for a device's lifetime; see the module docstring."""

    def __init__(self, board: Board, data_dir: Path, system_dir: Path | None = None):
        self.board = board
        self.data_dir = Path(data_dir)
        self.system_dir = system_dir
        self._proc: subprocess.Popen | None = None
        self._init_pid: int | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "BoardSession":
        """Start the board's PID 1 and wait until it is inside the root; a failed setup raises."""
        if self.running:
            return self
        host.require_tool("nsenter", "it enters the running board")
        cmd = sandbox_command(self.board, ["/bin/sh", "-c", INIT_SCRIPT], self.data_dir,
                              system_dir=self.system_dir)
        env = {"PATH": os.environ.get("PATH", os.defpath), **cmd.env}
        self._proc = subprocess.Popen(cmd.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        self._init_pid = self._wait_for_init()
        return self

    def _wait_for_init(self) -> int:
        root = os.path.realpath(self.board.root)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                stderr = self._proc.stderr.read().decode(errors="replace")
                done = CommandResult(["board"], self._proc.returncode, "", stderr, 0.0)
                failure = setup_failure(done)
                raise failure or BoardError(f"the board's init exited at once ({self._proc.returncode}): "
                                            f"{stderr.strip()[-300:]}")
            pid = _child_pid(self._proc.pid)
            if pid is not None and _root_of(pid) == root:
                self._proc.stderr.close()
                return pid
            time.sleep(POLL_S)
        self.stop()
        raise BoardError(f"the board {self.board.path} did not start within {START_TIMEOUT_S:.0f} s")

    def command(self, argv: Sequence[str], *, cwd: str = DATA_MOUNT,
                env: Mapping[str, str] | None = None) -> SandboxCommand:
        """The host argv that runs ``argv`` inside the running board (its root, /proc and PIDs)."""
        if not self.running or self._init_pid is None:
            raise BoardError(f"the board {self.board.path} is not running (start the session first)")
        if not argv:
            raise BoardError("nothing to run in the board: empty argv")
        variables = {**BOARD_ENV, "QEMU_CPU": self.board.spec.profile.qemu_cpu, **(env or {})}
        inner = ["/usr/bin/env", "-i", "-C", cwd, *(f"{k}={v}" for k, v in variables.items()), *argv]
        outer = ["nsenter", "--target", str(self._init_pid), "--mount", "--pid", "--uts", "--root"]
        return SandboxCommand(tuple(outer + inner), {"LC_ALL": "C"})

    def stop(self) -> None:
        """Kill the board's PID 1 (and with it every process of the board). Idempotent."""
        proc, self._proc, self._init_pid = self._proc, None, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if proc.stderr is not None and not proc.stderr.closed:
            proc.stderr.close()


def _child_pid(pid: int) -> int | None:
    """The first child of ``pid`` (unshare's forked PID 1 of the board), or None yet."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = fh.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _root_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None
