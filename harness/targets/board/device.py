"""A board behind the simulated ADB device: what ``qskew devices simulate --board`` plugs into it.

The simulated device (``harness.targets.simulate``) keeps its storage in a host folder ``root``; with
a board, that folder is seen from inside the board as Android lays a phone out:

    <root>/data/local/tmp   the board's /data/local/tmp (writable; sync reads and writes here)
    <root>/system           the board's /system, read-only (getprop, python3/python launchers)

:class:`BoardShell` is the seam the device uses: ``start``/``stop`` run one board for the device's
lifetime (:class:`session.BoardSession`: every shell shares its processes, so a detached job
outlives the shell that started it), ``wrap`` turns a shell command into the host argv that enters
that board, ``device_env`` is the environment
of the shell inside the board, ``host_path`` maps a device path onto the host folder, and
``properties``/``abi``/``model`` are what ``getprop`` answers, consistent with ``uname -m`` and
the board's ``/proc/cpuinfo``.

Example::

    shell = BoardShell(load_board(Path("/srv/boards/a64")), Path("/tmp/dev0"))
    SimulatedDevice(Path("/tmp/dev0"), board=shell).start()   # starts the board too
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from harness.targets.board.build import Board, build_board, load_board
from harness.targets.board.cpuinfo import CPU_MODELS
from harness.targets.board.sandbox import BOARD_ENV, DATA_MOUNT, SYSTEM_MOUNT, SandboxCommand
from harness.targets.board.session import BoardSession
from harness.targets.board.spec import ARCHES, DATA_DIR, BoardError, BoardSpec

ABIS = {"aarch64": "arm64-v8a", "armv7l": "armeabi-v7a"}  # Android's name of each board's ABI
ABI_LISTS = {"aarch64": "arm64-v8a", "armv7l": "armeabi-v7a,armeabi"}
BOARD_PYTHON = "/usr/bin/python3"  # what the device's python3/python launchers start, inside the board
SYSTEM_BIN = f"/{SYSTEM_MOUNT}/bin"


class BoardShell:
    """A built board and the host folder that is the simulated device's storage."""

    def __init__(self, board: Board, storage: Path):
        self.board = board
        self.storage = Path(storage)
        self.session = BoardSession(board, self.data_dir, self.storage / SYSTEM_MOUNT)

    def start(self) -> None:
        """Start the device's board (its storage folders first); a board that cannot start raises."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.storage / SYSTEM_MOUNT).mkdir(parents=True, exist_ok=True)
        self.session.start()

    def stop(self) -> None:
        self.session.stop()

    @property
    def arch(self) -> str:
        return self.board.spec.arch

    @property
    def abi(self) -> str:
        return ABIS[self.arch]

    @property
    def model(self) -> str:
        return f"qskew board {self.arch}"

    @property
    def python(self) -> str:
        return BOARD_PYTHON

    @property
    def data_dir(self) -> Path:
        """The host folder mounted at the board's /data/local/tmp (the only writable place)."""
        return Path(self.storage) / DATA_DIR

    def properties(self) -> dict[str, str]:
        """getprop keys that say what board this is (added to the device's own)."""
        spec = self.board.spec
        return {"ro.product.cpu.abi": self.abi, "ro.product.cpu.abilist": ABI_LISTS[self.arch],
                "ro.soc.manufacturer": "ARM", "ro.soc.model": CPU_MODELS[self.arch],
                "ro.hardware": f"qskew-board-{self.arch}", "ro.board.platform": "qemu-user",
                "ro.product.board": spec.folder_name(), "qskew.board.runtime": spec.runtime,
                "qskew.board.python": spec.python}

    def device_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The environment of a device shell inside the board."""
        return {**BOARD_ENV, "PATH": f"{SYSTEM_BIN}:{BOARD_ENV['PATH']}", "SHELL": "/bin/sh", **extra}

    def wrap(self, command: str, env: Mapping[str, str]) -> SandboxCommand:
        """The host argv (and host env additions) running ``sh -c command`` inside the running board."""
        return self.session.command(["/bin/sh", "-c", command], env=env)

    def host_path(self, device_path: str) -> str:
        """The host path of a device path: the storage folder plays the board's ``/`` (only its
        /data/local/tmp is the device's; the sync service refuses anything else). Relative paths
        are under /data/local/tmp, the shell's working folder."""
        if not device_path.startswith("/"):
            device_path = f"{DATA_MOUNT}/{device_path}"
        return os.path.join(str(self.storage), device_path.lstrip("/"))


def resolve_board(where: str, progress=None) -> Board:
    """The board named by ``where``: a built board's folder, or an architecture (``aarch64``,
    ``armv7l``) whose default board is built, or reused from qskew's cache."""
    if where in ARCHES:
        return build_board(BoardSpec(where), progress=progress)
    board = load_board(Path(where))
    if board is None:
        raise BoardError(f"no board at {where}: give a folder made by `qskew board build`, or an "
                         f"architecture ({', '.join(ARCHES)})")
    return board
