"""Device leases: one qskew process at a time drives a device, across all the host's qskew processes.

A lease is a lock file per device (its serial, address or name) in the farm state folder
(``$QSKEW_FARM_DIR``, else ``farm/leases`` in qskew's cache), locked with ``fcntl.flock`` for the
length of one job. The holder writes its pid, host, command and start time in it and empties it on
release; the kernel drops the lock of a process that dies, so a file still holding a holder when
its lock is free was left by a holder that is gone: it is taken over and reported as broken. A
lease held by a live process for longer than ``LEASE_MAX_AGE_S`` (``$QSKEW_LEASE_MAX_AGE_S``) is
broken too: its file is unlinked (the old holder keeps a lock on a file nobody opens any more) and
a new one is locked in its place, under a guard lock so two waiters never both break it. Each
released lease appends its interval to ``history.jsonl`` beside the lock files (who held which
device when), which ``qskew devices list`` and tests read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import TargetError
from harness.paths import cache_dir

log = logging.getLogger(__name__)
ENV_FARM_DIR = "QSKEW_FARM_DIR"
LEASE_POLL_S = 0.05          # how often a waiting process tries the lock again
LEASE_WAIT_S = 24 * 3600.0   # a job waits this long for a device another process holds
LEASE_MAX_AGE_S = 6 * 3600.0  # a lease held longer is a hung holder (no job takes hours): broken
ENV_MAX_AGE = "QSKEW_LEASE_MAX_AGE_S"
HISTORY = "history.jsonl"


def lease_dir() -> Path:
    """The farm state folder's lease folder (created)."""
    folder = Path(os.environ[ENV_FARM_DIR]) / "leases" if os.environ.get(ENV_FARM_DIR) else cache_dir("farm") / "leases"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lease_key(spec) -> str:
    """What identifies the physical device of inventory entry ``spec`` on this host, as a file name."""
    ident = spec.serial if spec.reach in ("adb-usb", "adb-server") else spec.address if spec.reach == "adb-tcp" \
        else f"{spec.reach}-{spec.name}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", ident)


@contextlib.contextmanager
def lease(key: str, echo: Callable[[str], None] = lambda _: None, wait_s: float = LEASE_WAIT_S,
          max_age_s: float | None = None) -> Iterator[dict]:
    """Hold the lease of device ``key`` for the ``with`` block (waiting while another process holds it).

    Yields the holder facts written in the lease file; ``holder["broke"]`` is the previous holder's
    text when a stale (holder gone) or over-age (held longer than ``max_age_s``) lease was broken."""
    path = lease_dir() / f"{key}.lease"
    max_age_s = max_age_default() if max_age_s is None else max_age_s
    fd, broke = _acquire(key, path, echo, time.monotonic() + wait_s, max_age_s)
    try:
        left = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if left and not broke:
            broke = f"holder gone: {left}"
            echo(f"lease of {key}: broke a stale lease ({broke})")
            log.warning("broke the stale lease %s: %s", path, left)
        holder = {"key": key, "pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(sys.argv)[:300], "start": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield {**holder, "broke": broke} if broke else holder
        finally:
            os.ftruncate(fd, 0)
            _record(holder)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def max_age_default() -> float:
    """``$QSKEW_LEASE_MAX_AGE_S``, else LEASE_MAX_AGE_S."""
    raw = os.environ.get(ENV_MAX_AGE, "")
    try:
        return float(raw) if raw else LEASE_MAX_AGE_S
    except ValueError:
        raise TargetError(f"${ENV_MAX_AGE} must be a number of seconds, got {raw!r}", "lease") from None


def _acquire(key: str, path: Path, echo, deadline: float, max_age_s: float) -> tuple[int, str]:
    """An fd of ``path`` holding its lock, and the text of an over-age lease broken for it ("" if none)."""
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                return fd, ""
            os.close(fd)  # broken (unlinked) meanwhile: lock the file now at its path
            continue
        except BlockingIOError:
            os.close(fd)
        text = _read(path)
        if _over_age(text, max_age_s) and _break(path, text):
            broke = f"held for more than {max_age_s:g} s by a live process: {text}"
            echo(f"lease of {key}: broke an over-age lease ({broke})")
            log.warning("broke the over-age lease %s: %s", path, text)
            fd, _ = _acquire(key, path, echo, deadline, max_age_s)
            return fd, broke
        if not told:
            echo(f"lease of {key}: held by {text or 'another process'}; waiting")
            told = True
        if time.monotonic() > deadline:
            raise TargetError(f"device lease {path} still held by {text}", key) from None
        time.sleep(LEASE_POLL_S)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _over_age(text: str, max_age_s: float) -> bool:
    try:
        start = float(json.loads(text)["start"])
    except (ValueError, KeyError, TypeError):
        return False
    return time.time() - start > max_age_s


def _break(path: Path, seen: str) -> bool:
    """Unlink the lease file at ``path`` if it still holds ``seen`` (one breaker at a time)."""
    guard = os.open(path.with_suffix(".break"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if _read(path) != seen:
            return False  # another waiter broke it first, or the holder moved on
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(guard)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _record(holder: dict) -> None:
    line = json.dumps({**holder, "end": time.time()}) + "\n"
    with open(lease_dir() / HISTORY, "a") as f:  # one short append per job: atomic enough on a local disk
        f.write(line)


def held_leases() -> list[dict[str, Any]]:
    """The leases held right now: holder facts of every locked lease file."""
    held = []
    for path in sorted(lease_dir().glob("*.lease")):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            try:
                held.append(json.loads(_read(path) or "{}") or {"key": path.stem})
            except ValueError:
                held.append({"key": path.stem})
        finally:
            os.close(fd)
    return held
