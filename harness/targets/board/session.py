"""One running board that many commands enter: what a simulated ADB device with a board keeps open.

A board's session is the common :class:`harness.targets.confine_session.ConfinedSession` (PID 1
started once, every shell entering it with ``nsenter``, so a detached job outlives the shell that
started it) over the board's confinement (:func:`sandbox.board_confinement`).

Example::

    session = BoardSession(board, data_dir, system_dir).start()
    cmd = session.command(["uname", "-m"])
    run_command(cmd.argv, timeout_s=60, env=cmd.env).stdout   # 'aarch64\\n'
    session.stop()
"""

from __future__ import annotations

from pathlib import Path

from harness.targets.board import host
from harness.targets.board.build import Board
from harness.targets.board.sandbox import board_confinement, make_system_point, require_board_host
from harness.targets.confine_session import ConfinedSession


class BoardSession(ConfinedSession):
    """A board kept running for a device's lifetime; see the module docstring."""

    def __init__(self, board: Board, data_dir: Path, system_dir: Path | None = None):
        super().__init__(board_confinement(board, data_dir, system_dir), what=f"the board {board.path}")
        self.board = board
        self.data_dir = Path(data_dir)
        self.system_dir = system_dir

    def start(self) -> "BoardSession":
        """Start the board's PID 1 and wait until it is inside the root; a failed setup raises."""
        if not self.running:
            require_board_host(self.board)
            if self.system_dir is not None:
                make_system_point(self.board)
            host.require_tool("nsenter", "it enters the running board")
        super().start()
        return self
