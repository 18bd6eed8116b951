"""Check a runner's ``result.json`` before anything reads a field of it.

The file comes from a device, so it may be truncated (a full disk, a killed runner), malformed or
written by something else. Whatever it holds, the host gets either the parsed object, every field
it reads of the expected type (fields in ``device_runner.protocol``), or one RunnerError naming the
device and the file -- never a KeyError or TypeError from deep inside the host.

>>> check_result(b'{"protocol": "1.3", "status": "error", "error": "x"}', "jobs/ab/result.json", "pixel7")["status"]
'error'
"""

from __future__ import annotations

import json
import math
import posixpath
from typing import Any, Callable

from harness.errors import RunnerError

STATUSES = ("ok", "error")
_TEXT = (str, type(None))
_NUMBER = (int, float, type(None))
# field -> the types it may hold (None = absent or null); the runner writes every one
FIELDS: dict[str, tuple[type, ...]] = {
    "protocol": (str,), "status": (str,), "error": _TEXT, "error_kind": _TEXT, "runtime": _TEXT,
    "runtime_version": _TEXT, "delegate_applied": _TEXT, "batch_size": (int, type(None)),
    "timings": (dict, type(None)), "execution_plan": (dict, type(None)), "output": (dict, type(None)),
}
OUTPUT_FIELDS: dict[str, tuple[type, ...]] = {
    "file": (str,), "dtype": (str,), "scale": _NUMBER, "zero_point": (int, type(None)), "sha256": _TEXT,
}


def check_result(data: bytes, remote: str, device: str, speaks: Callable[[str], bool] = lambda v: True) -> dict:
    """The result object in ``data`` (the bytes of ``remote`` pulled from ``device``), checked.

    A result in a protocol the host does not ``speak`` comes back unchecked beyond its
    ``protocol`` field, for the caller's ProtocolMismatch (its fields may mean other things)."""
    def bad(what: str) -> RunnerError:
        return RunnerError(f"runner wrote an unusable {remote}: {what}", device)

    try:
        result = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise bad(f"not JSON ({type(exc).__name__}: {str(exc)[:200]}); truncated?") from None
    if not isinstance(result, dict):
        raise bad(f"a JSON {type(result).__name__}, not an object")
    _check_fields(result, {"protocol": FIELDS["protocol"]}, "", bad)
    if not speaks(result["protocol"]):
        return result
    _check_fields(result, FIELDS, "", bad)
    if result["status"] not in STATUSES:
        raise bad(f"status {result['status']!r} is not one of {', '.join(STATUSES)}")
    if result["status"] == "ok":
        if result.get("output") is None:
            raise bad("status ok but no output")
        _check_fields(result["output"], OUTPUT_FIELDS, "output.", bad)
        out = result["output"]
        if posixpath.basename(out["file"]) != out["file"] or out["file"] in ("", ".", ".."):
            raise bad(f"output.file {out['file']!r} is not a file name in the job folder")
        if out.get("scale") is not None and not math.isfinite(out["scale"]):
            raise bad(f"output.scale {out['scale']!r} is not a finite number")
    per_batch = (result.get("timings") or {}).get("per_batch_s")
    if per_batch is not None and not (isinstance(per_batch, list) and all(_is_number(t) for t in per_batch)):
        raise bad("timings.per_batch_s is not a list of numbers")
    return result


def _check_fields(obj: dict, fields: dict[str, tuple[type, ...]], prefix: str, bad) -> None:
    for key, types in fields.items():
        value = obj.get(key)
        if key not in obj and type(None) not in types:
            raise bad(f"no {prefix}{key}")
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise bad(f"{prefix}{key} is {type(value).__name__} {_short(value)}, expected {names}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
