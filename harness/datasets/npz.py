"""A dataset from a ``.npz`` file (keys in ``harness.datasets``); read without unpickling."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from harness.datasets.assemble import assemble
from harness.errors import DatasetError
from harness.records import GroupedDataset, Preprocess


def load_npz(path: Path) -> GroupedDataset:
    """A dataset from a ``.npz`` file (keys in the module docstring); never unpickles."""
    arrays = read_npz(path)
    for key in ("x", "y", "group"):
        if key not in arrays:
            raise DatasetError(f"{path}: missing array {key!r}; a dataset .npz needs x, y, group "
                               f"(optional: id, split, preprocess_scale, preprocess_offset); found: "
                               f"{', '.join(sorted(arrays)) or 'nothing'}")
    x = arrays["x"]
    if x.dtype.kind not in "uif" or x.ndim < 2:
        raise DatasetError(f"{path}: 'x' must be a numeric array [N, ...], got dtype {x.dtype} shape {x.shape}")
    default_scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    preprocess = Preprocess(scale=_scalar(arrays, "preprocess_scale", default_scale, path),
                            offset=_scalar(arrays, "preprocess_offset", 0.0, path))
    return assemble(path, path.stem, x, arrays["y"], arrays["group"], arrays.get("id"), arrays.get("split"),
                    preprocess)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    if not hasattr(npz, "files"):
        raise DatasetError(f"{path}: holds a single array, not a .npz archive of named arrays")
    arrays = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:
                if "pickle" not in str(exc):
                    raise DatasetError(f"{path}: array {key!r} cannot be read ({exc})") from exc
                raise DatasetError(f"{path}: array {key!r} holds Python objects and would need pickle, which "
                                   "qskew never loads; save strings as unicode arrays, "
                                   "e.g. np.array(values, dtype=str)") from exc
            except Exception as exc:  # zipfile/zlib errors of a truncated archive
                raise DatasetError(f"{path}: array {key!r} cannot be read ({exc})") from exc
    return arrays


def _scalar(arrays: dict, key: str, default: float, path: Path) -> float:
    if key not in arrays:
        return default
    value = arrays[key]
    if value.size != 1 or value.dtype.kind not in "uif" or not np.isfinite(value).all():
        raise DatasetError(f"{path}: {key!r} must be one finite number, got {value!r}")
    return float(value.reshape(()))
