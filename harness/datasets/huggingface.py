"""Hugging Face datasets: ``dataset = "hf:PATH_OR_NAME"`` -> ``GroupedDataset``, read with ``datasets``.

The experiment file maps the columns (``[data]`` in ``harness.config``)::

    dataset = "hf:data/faces"       # a folder written by save_to_disk, or a name in the local cache
    split = "test"                  # the split that is qskew's test split (default "test")
    input = "image"                 # the sample column: images, or numbers / arrays of numbers
    label = "label"                 # the class column: integers, a ClassLabel, or strings (sorted)
    groups = ["gender", "race"]     # one or more group columns (default "group"); ClassLabels by name
    intersections = true            # also report the crossing of the group columns
    allow_download = false          # true: a name missing from the local cache may be downloaded

The split named "train", when the dataset has one, is qskew's train split (calibration, built-in
model training); without one, a seeded 60/40 split of ``split``, stratified by group cell, is made
(and said so in the description). A single ``Dataset`` folder is treated the same way. An ``id``
column, if present, gives the sample ids (else "<split>-<row>").

Nothing is downloaded at run time unless ``allow_download = true``: the read runs with
``HF_DATASETS_OFFLINE`` and ``HF_HUB_OFFLINE`` on, and when the environment sets either of them,
it stays offline even with ``allow_download``. Images (an ``Image`` column, or PIL images) are
decoded to uint8 [H, W, C] (C = 1 when the first image is greyscale, else 3) at the first image's
size, with scale 1/255; :func:`fit_to_model` later resizes them to the model's input. The
``datasets`` library is the optional extra ``qskew[hf]``; without it, one DatasetError names it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.datasets.assemble import assemble, freeze
from harness.datasets.tabular import group_cells, label_codes
from harness.errors import DatasetError
from harness.records import GroupedDataset, Preprocess

if TYPE_CHECKING:
    from harness.datasets.tabular import TableOptions

HF_PREFIX = "hf:"
HF_EXTRA = "pip install 'qskew[hf]'"
OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_INPUT, DEFAULT_LABEL, DEFAULT_SPLIT, TRAIN_SPLIT = "image", "label", "test", "train"
CHUNK_ROWS = 512   # rows read (and images decoded) at a time


def is_hf(spec: Any) -> bool:
    return str(spec).startswith(HF_PREFIX)


def load_hf(spec: str, options: "TableOptions") -> GroupedDataset:
    """The dataset ``spec`` ("hf:PATH_OR_NAME") with the columns ``options`` maps (module docstring)."""
    target = str(spec)[len(HF_PREFIX):].strip()
    if not target:
        raise DatasetError(f"{spec!r}: give a save_to_disk folder or a dataset name after {HF_PREFIX!r}")
    hf = _library(spec)
    source = Path(target).expanduser()
    splits = _open(hf, target, source, options.allow_download)
    test_name = options.split or DEFAULT_SPLIT
    if test_name not in splits:
        raise DatasetError(f"{spec}: no split {test_name!r}; it has {', '.join(sorted(splits))} "
                           "(name the test split with [data] split)")
    parts = [(test_name, splits[test_name])]
    if TRAIN_SPLIT in splits and TRAIN_SPLIT != test_name:
        parts.insert(0, (TRAIN_SPLIT, splits[TRAIN_SPLIT]))
    columns = Columns(input=options.input or DEFAULT_INPUT, label=options.label or DEFAULT_LABEL,
                      groups=options.group_columns())
    read = [_read_split(hf, spec, name, ds, columns) for name, ds in parts]
    return _assemble(spec, source, read, columns, options, seeded=len(parts) == 1)


class Columns:
    """The column mapping of one dataset."""

    def __init__(self, input: str, label: str, groups: tuple[str, ...]):
        self.input, self.label, self.groups = input, label, tuple(groups)

    def all(self) -> tuple[str, ...]:
        return (self.input, self.label, *self.groups)


def _library(spec: str):
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(f"{spec}: Hugging Face datasets need the optional extra: {HF_EXTRA} "
                           f"(the `datasets` library is not installed: {exc})") from exc
    return datasets


@contextlib.contextmanager
def offline(hf, allow_download: bool):
    """Offline mode for the read, unless downloads are allowed and the environment does not forbid them."""
    from_env = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)
    if allow_download and not from_env:
        yield False
        return
    import huggingface_hub.constants as hub

    saved_env = {v: os.environ.get(v) for v in OFFLINE_VARIABLES}
    saved = [(obj, name, getattr(obj, name)) for obj, name in
             ((hf.config, "HF_DATASETS_OFFLINE"), (hf.config, "HF_HUB_OFFLINE"), (hub, "HF_HUB_OFFLINE"))
             if hasattr(obj, name)]
    os.environ.update({v: "1" for v in OFFLINE_VARIABLES})
    for obj, name, _ in saved:
        setattr(obj, name, True)
    try:
        yield True
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        for v, value in saved_env.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


def _open(hf, target: str, source: Path, allow_download: bool) -> dict[str, Any]:
    """{split name: Dataset} from a save_to_disk folder, else from the cache (or the Hub if allowed)."""
    with offline(hf, allow_download) as is_offline:
        try:
            if source.exists():
                loaded = hf.load_from_disk(str(source))
            else:
                loaded = hf.load_dataset(target)
        except Exception as exc:  # FileNotFoundError, the Hub's offline errors, a corrupt folder
            where = (f"the folder {source} is not a dataset saved with save_to_disk" if source.exists() else
                     f"{target!r} is not a folder and not in the local Hugging Face cache")
            hint = ("; downloads are off: load it once with datasets.load_dataset() or set [data] "
                    "allow_download = true" if is_offline and not source.exists() else "")
            raise DatasetError(f"hf:{target}: cannot read it: {where}{hint} ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, hf.Dataset):
        return {DEFAULT_SPLIT: loaded}
    return dict(loaded)


def _read_split(hf, spec: str, name: str, ds, columns: Columns) -> dict[str, Any]:
    """The columns of one split as numpy arrays (images decoded) plus its ids."""
    missing = [c for c in dict.fromkeys(columns.all()) if c not in ds.column_names]
    if missing:
        raise DatasetError(f"{spec}: split {name!r} has no column {missing[0]!r}; its columns: "
                           f"{', '.join(ds.column_names)} (map them with [data] input, label and groups)")
    n = ds.num_rows
    if n == 0:
        raise DatasetError(f"{spec}: split {name!r} has no rows")
    ids = (np.asarray(_numpy_column(ds, "id")).astype(str) if "id" in ds.column_names
           else np.array([f"{name}-{i:05d}" for i in range(n)]))
    image = isinstance(ds.features.get(columns.input), hf.Image)
    x = _images(spec, name, ds, columns.input) if image else _numbers(spec, name, ds, columns.input)
    groups = {c: _named(ds, c, hf) for c in columns.groups}
    return {"split": name, "ids": ids, "x": x, "label": _named(ds, columns.label, hf, keep_codes=True),
            "groups": groups, "image": image}


def _numpy_column(ds, column: str) -> np.ndarray:
    view = ds.select_columns([column]).with_format("numpy")
    return np.concatenate([np.asarray(view[i:i + CHUNK_ROWS][column]) for i in range(0, ds.num_rows, CHUNK_ROWS)])


def _named(ds, column: str, hf, keep_codes: bool = False) -> np.ndarray:
    """A label or group column; a ClassLabel's codes become its names (labels keep their codes)."""
    values = _numpy_column(ds, column)
    feature = ds.features.get(column)
    if isinstance(feature, hf.ClassLabel) and not keep_codes:
        return np.array(feature.int2str(values.astype(np.int64).tolist()), dtype=str)
    return values


def _numbers(spec: str, name: str, ds, column: str) -> np.ndarray:
    values = _numpy_column(ds, column)
    if values.dtype == object or values.dtype.kind not in "iufb":
        raise DatasetError(f"{spec}: split {name!r}: input column {column!r} is neither images nor numbers "
                           f"of one shape (dtype {values.dtype})")
    values = values.astype(np.float32)
    return values[:, np.newaxis] if values.ndim == 1 else values


def _images(spec: str, name: str, ds, column: str) -> np.ndarray:
    """Decoded uint8 [N, H, W, C] at the first image's size and channels."""
    view = ds.select_columns([column])
    out, size, mode = [], None, None
    for start in range(0, ds.num_rows, CHUNK_ROWS):
        for i, image in enumerate(view[start:start + CHUNK_ROWS][column]):
            if image is None:
                raise DatasetError(f"{spec}: split {name!r}: row {start + i} has no image in column {column!r}")
            if mode is None:
                mode, size = ("L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"), image.size
            out.append(to_array(image, mode, size))
    return np.stack(out)


def to_array(image, mode: str, size: tuple[int, int]) -> np.ndarray:
    """A PIL image as uint8 [H, W, C] in ``mode`` ("L" or "RGB") at ``size`` (width, height)."""
    from PIL import Image

    image = image.convert(mode)
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def _assemble(spec: str, source: Path, read: list[dict], columns: Columns, options: "TableOptions",
              seeded: bool) -> GroupedDataset:
    import pandas as pd

    shapes = {r["split"]: r["x"].shape[1:] for r in read}
    if len(set(shapes.values())) > 1:
        raise DatasetError(f"{spec}: the splits' samples differ in shape: {shapes}")
    ids = np.concatenate([r["ids"] for r in read])
    labels, label_note = label_codes(pd.Series(np.concatenate([r["label"] for r in read])))
    frame = pd.DataFrame({c: np.concatenate([r["groups"][c] for r in read]) for c in columns.groups})
    cells = group_cells(source, frame, columns.groups, ids)
    split = None if seeded else np.concatenate([np.full(len(r["ids"]), r["split"]) for r in read])
    image = read[0]["image"]
    preprocess = Preprocess(scale=1.0 / 255.0) if image else Preprocess()
    notes = "; ".join(p for p in (f"Hugging Face dataset, splits {', '.join(r['split'] for r in read)}",
                                  f"input {columns.input!r}" + (" (images, uint8)" if image else ""),
                                  f"label {columns.label!r}{label_note}") if p)
    return assemble(source, spec, np.concatenate([r["x"] for r in read]), labels, cells, ids, split, preprocess,
                    attributes=columns.groups, intersections=options.intersections and len(columns.groups) > 1,
                    notes=notes)


def fit_to_model(ds: GroupedDataset, input_shape: tuple) -> GroupedDataset:
    """A Hugging Face image dataset resized (and its channels converted) to the model's [H, W, C]
    input; any other dataset, or one that already fits, as it is."""
    wanted = tuple(input_shape)
    if not (is_hf(ds.name) and ds.x.ndim == 4 and ds.x.dtype == np.uint8 and len(wanted) == 3):
        return ds
    height, width, channels = wanted
    have = ds.x.shape[1:]
    target = (height or have[0], width or have[1], channels or have[2])
    if target == have or target[2] not in (1, 3):
        return ds
    from dataclasses import replace

    from PIL import Image

    mode = "L" if target[2] == 1 else "RGB"
    x = np.stack([to_array(Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a), mode, (target[1], target[0]))
                  for a in ds.x])
    note = f"; images resized from {have[0]}x{have[1]}x{have[2]} to the model's {target[0]}x{target[1]}x{target[2]}"
    return freeze(replace(ds, x=x, description=ds.description + note))
