"""One writer per run directory: an exclusive ``fcntl.flock`` on ``RUN_DIR/lock``.

Two processes writing one run directory would each believe they own the job sequence and lose
each other's jobs, so every writer holds the lock for as long as it writes. The commands that
write runs (run, demo, compare-delegates, mitigate, suggest-mixed) take it before anything slow
(before TensorFlow is imported, a model trained or a variant converted); :class:`RunWriter` takes
it too, so a library caller is covered. A second writer fails at once with a ResultsError that
names the holder's pid, host and start time, which the holder writes into the lock file.

The lock is re-entrant within a process (the CLI's lock and its RunWriter's are one) and is
released by the kernel when the holding process dies, however it dies: a killed run never leaves
a stale lock behind. The file stays (emptied) once the run holds anything; a new holder checks that
the file it locked is still the one at the path, so removing the file of an empty folder is safe.

Example::

    with locked(Path("runs/demo")):
        ...  # write the run
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from harness.errors import ResultsError
from harness.rundir.layout import LOCK_FILE

_held: dict[Path, list] = {}   # absolute run dir -> [fd, holds in this process, created by the lock]
_guard = threading.Lock()


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block (creating the folder if needed)."""
    acquire(run_dir)
    try:
        yield
    finally:
        release(run_dir)


def acquire(run_dir: Path) -> None:
    """Take ``run_dir``'s lock now or raise ResultsError naming its holder; re-entrant in a process."""
    key = _key(run_dir)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return
        created = not key.exists()
        while True:  # until the file we locked is still the one at the path (a releaser may remove it)
            fd = _open(key, run_dir)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ResultsError(f"run directory {run_dir} is being written by another qskew ({holder}); "
                                   f"wait for it to finish or choose another folder") from None
            if _same_file(fd, key / LOCK_FILE):
                break
            os.close(fd)
        _write_holder(fd)
        _held[key] = [fd, 1, created]


def release(run_dir: Path) -> None:
    """Give back one hold of ``run_dir``'s lock; the last one unlocks it. A folder the lock created
    and nothing else wrote into is removed again: a command that failed early leaves no trace."""
    key = _key(run_dir)
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            fd, _, created = entry
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)   # no holder named once nobody holds it
                if created and [p.name for p in key.iterdir()] == [LOCK_FILE]:
                    (key / LOCK_FILE).unlink()   # still locked: a new writer re-checks the path
                    key.rmdir()
            os.close(fd)              # closing the descriptor drops the flock


def _open(key: Path, run_dir: Path) -> int:
    try:
        key.mkdir(parents=True, exist_ok=True)
        return os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ResultsError(f"cannot create the lock file of run directory {run_dir}: {exc}") from exc


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def holds(run_dir: Path) -> bool:
    """True while this process holds ``run_dir``'s lock."""
    with _guard:
        return _key(run_dir) in _held


def _key(run_dir: Path) -> Path:
    return Path(os.path.abspath(run_dir))


def _write_holder(fd: int) -> None:
    """pid, host and start time into the lock file, for the message a second writer gets."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with contextlib.suppress(OSError):  # the lock holds without the note; the note only names it
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {holder['pid']} on host {holder['host']}, since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown: it has not written its pid yet"
