"""File helpers every part of the host shares: one atomic write, and JSON that is always plain.

``atomic_write`` is the only way qskew replaces a file on the host: it writes a temporary file in
the same folder, fsyncs it, gives it the mode asked for (else the mode of the file it replaces, or
the umask's default for a new file), renames it over the target and fsyncs the folder, so a reader
sees the old file or the new one, never half of one, and a crash leaves no stray temporary file
behind (it is removed on every error path; a ``kill -9`` between create and rename leaves a
``.NAME.*.tmp`` that the next write of the same file does not trip over).

The device runner has its own copy (``device_runner/jobdir.py``): it runs on boards without qskew.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from harness.errors import QskewError


def atomic_write(path: Path, write: Callable[[Path], Any], *, error: Callable[[str], Exception] = QskewError,
                 mode: int | None = None) -> None:
    """Replace ``path`` with what ``write(tmp)`` writes to a temporary file beside it.

    Example::

        atomic_write(run_dir / "summary.json", lambda p: p.write_text(text))
        atomic_write(key_path, lambda p: p.write_bytes(pem), mode=0o600)  # a private key

    The new file gets ``mode`` when given (set before the rename, so it is never readable with a
    wider mode), else the mode of the file it replaces, else the umask's default. An OSError
    becomes ``error(message)`` naming the file (an error class, or e.g. ``lambda m: TargetError(m, device)``); the temporary file never outlives the call.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(path) if mode is None else mode)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise error(f"cannot write {path}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, error: Callable[[str], Exception] = QskewError,
                       mode: int | None = None) -> None:
    """``atomic_write`` of a bytes value."""
    atomic_write(path, lambda p: p.write_bytes(data), error=error, mode=mode)


def atomic_write_text(path: Path, text: str, *, error: Callable[[str], Exception] = QskewError,
                      mode: int | None = None) -> None:
    """``atomic_write`` of a str value (UTF-8)."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), error=error, mode=mode)


def jsonable(obj: Any) -> Any:
    """Plain JSON types: dataclasses as dicts, enums as values, numpy unwrapped, NaN/inf -> None, paths -> str."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        obj = obj.value
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any) -> str:
    """``obj`` as indented, strict JSON text (after :func:`jsonable`), ending in a newline."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _mode_for(path: Path) -> int:
    """The mode of the file being replaced, else what a plain ``open(path, "w")`` would give."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without setting it (``os.umask`` would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash after it must not bring the old file back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some file systems do not open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
