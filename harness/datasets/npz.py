"""A dataset from a ``.npz`` file (keys in ``harness.datasets``); read without unpickling.

Members stored uncompressed (``np.savez``) are memory-mapped from the file rather than read
(:func:`mapped_members`): a test set larger than memory loads in no time and is read in chunks by
the stages that pass over it. Members of ``np.savez_compressed`` are read whole.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from harness.datasets.assemble import assemble
from harness.errors import DatasetError
from harness.records import GroupedDataset, Preprocess, watch_file

LOCAL_HEADER_BYTES = 30   # a zip member's local file header before its name and extra field
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


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
    """The archive's arrays by name: each member stored uncompressed (``np.savez``) memory-mapped
    read-only in place (:func:`mapped_members`), the others (``np.savez_compressed``) read whole."""
    npz = _open(path)
    try:
        mapped = mapped_members(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        mapped = {}  # read whole below, where a damaged archive gets its error message
    with npz:
        return {key: mapped[key] if key in mapped else _member(npz, key, path) for key in npz.files}


def mapped_members(path: Path) -> dict[str, np.ndarray]:
    """The members of ``path`` stored without compression (``np.savez``), as read-only
    ``np.memmap`` arrays of the file: their pages are read when used, not when the dataset loads,
    and a pass in chunks (``harness.records.row_chunks``) hands them back, so a test set larger
    than memory can be evaluated. Scalars, empty arrays and compressed members are left out. Each
    pass checks first that the file was not written again since (``records.watch_file``)."""
    out = {}
    with open(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                continue
            handle.seek(info.header_offset)
            local = handle.read(LOCAL_HEADER_BYTES)
            if local[:4] != b"PK\x03\x04":
                continue
            name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            handle.seek(info.header_offset + LOCAL_HEADER_BYTES + name_len + extra_len)
            try:
                version = np.lib.format.read_magic(handle)
                read_header = _HEADER_READERS.get(version)
                if read_header is None or info.flag_bits & 1:  # a newer .npy format, an encrypted member
                    continue
                shape, fortran, dtype = read_header(handle)
            except ValueError:
                continue  # not an .npy member after all: the whole read reports it
            if dtype.hasobject or not shape or 0 in shape:
                continue
            array = np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape,
                              order="F" if fortran else "C")  # this open file: what watch_file checks
            watch_file(array, handle)
            out[info.filename[:-len(".npy")]] = array
    return out


def _open(path: Path):
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    if not hasattr(npz, "files"):
        raise DatasetError(f"{path}: holds a single array, not a .npz archive of named arrays")
    return npz


def _member(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise DatasetError(f"{path}: array {key!r} cannot be read ({exc})") from exc
        raise DatasetError(f"{path}: array {key!r} holds Python objects and would need pickle, which "
                           "qskew never loads; save strings as unicode arrays, "
                           "e.g. np.array(values, dtype=str)") from exc
    except Exception as exc:  # zipfile/zlib errors of a truncated archive
        raise DatasetError(f"{path}: array {key!r} cannot be read ({exc})") from exc


def _scalar(arrays: dict, key: str, default: float, path: Path) -> float:
    if key not in arrays:
        return default
    value = arrays[key]
    if value.size != 1 or value.dtype.kind not in "uif" or not np.isfinite(value).all():
        raise DatasetError(f"{path}: {key!r} must be one finite number, got {value!r}")
    return float(value.reshape(()))
