"""Content-addressed cache of converted variants.

Layout: ``<cache_dir>/<key>/<variant>.tflite`` plus ``<variant>.json`` (the sidecar). The key is
the sha256 of everything that decides the bytes of the file:

- the model's fingerprint (Keras: architecture JSON + every weight's path, dtype, shape and bytes;
  SavedModel: every file's relative path and bytes),
- the variant name and the converter settings that matter for it (its "request" recipe),
- the calibration sha256 when the variant is calibrated,
- the tensorflow and ai-edge-quantizer versions.

The sidecar is written last (atomically), so a folder with a .tflite and no sidecar is an
interrupted write and counts as a miss. A .tflite whose bytes no longer match the sidecar's sha256
is logged and also counts as a miss, so the variant is converted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from harness.errors import ModelError
from harness.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

SIDECAR_SCHEMA = 1        # bump when the sidecar's fields change meaning
HASH_CHUNK_BYTES = 1 << 20  # read SavedModel files in 1 MiB chunks: variables can be large
VERSIONED_PACKAGES = ("tensorflow", "ai-edge-quantizer")  # converters whose output may change


def tool_versions() -> dict[str, str]:
    """Versions of the packages that produce the bytes of a variant."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def model_fingerprint(model: Any) -> str:
    """sha256 of a Keras model (architecture + weights) or of a SavedModel folder's files."""
    if isinstance(model, (str, os.PathLike)):
        return _saved_model_fingerprint(Path(model))
    import numpy as np

    h = hashlib.sha256()
    try:
        h.update(model.to_json().encode())
    except Exception as exc:  # subclassed models without get_config cannot serialize
        log.debug("model.to_json() failed (%s); fingerprinting class and weights only", exc)
        h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for weight in model.weights:
        value = np.ascontiguousarray(weight.numpy())
        h.update(f"{getattr(weight, 'path', weight.name)}|{value.dtype}|{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _saved_model_fingerprint(folder: Path) -> str:
    if not (folder / "saved_model.pb").is_file():
        raise ModelError(f"{folder} is not a SavedModel folder (no saved_model.pb)")
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder).as_posix()).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                h.update(chunk)
    return h.hexdigest()


def cache_key(fingerprint: str, variant: str, request: Mapping[str, Any],
              calibration_sha256: str | None, versions: Mapping[str, str]) -> str:
    """The cache key of one variant of one model (see the module docstring)."""
    payload = {"fingerprint": fingerprint, "variant": variant, "request": dict(request),
               "calibration_sha256": calibration_sha256, "versions": dict(versions)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def entry_paths(cache_dir: Path, key: str, variant: str) -> tuple[Path, Path]:
    """(tflite, sidecar) paths of one cache entry."""
    folder = Path(cache_dir) / key
    return folder / f"{variant}.tflite", folder / f"{variant}.json"


def load(cache_dir: Path, key: str, variant: str) -> dict | None:
    """The sidecar of a complete, intact entry, or None (a miss)."""
    tflite, sidecar = entry_paths(cache_dir, key, variant)
    if not (tflite.is_file() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        log.warning("cache sidecar %s is unreadable (%s); converting again", sidecar, exc)
        return None
    if meta.get("schema") != SIDECAR_SCHEMA:
        return None
    if file_sha256(tflite) != meta.get("sha256"):
        log.warning("cached %s does not match its recorded sha256; converting again", tflite)
        return None
    return meta


def store(cache_dir: Path, key: str, variant: str, data: bytes) -> Path:
    """Write the .tflite of an entry (atomically) and return its path."""
    tflite, _ = entry_paths(cache_dir, key, variant)
    _atomic_write(tflite, data)
    return tflite


def store_sidecar(cache_dir: Path, key: str, variant: str, meta: Mapping[str, Any]) -> Path:
    """Write the sidecar last: its presence marks the entry complete."""
    _, sidecar = entry_paths(cache_dir, key, variant)
    body = {"schema": SIDECAR_SCHEMA, "key": key, "variant": variant, **meta}
    _atomic_write(sidecar, json.dumps(body, indent=2, sort_keys=True).encode())
    return sidecar


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
