"""Built-in and user datasets -> ``GroupedDataset``, validated once, on entry.

``load(spec)`` takes one of:

* ``"digits-groups"`` -- the built-in image dataset (no download), its recipe in ``digits.py``;
* ``"adult"`` -- the built-in tabular dataset of UCI Adult (groups ``sex`` and ``race``, people),
  shipped in the package, its provenance and preprocessing in ``adult.py``;
* a table (``.csv``, ``.parquet``, a folder of Parquet parts) when ``options.label`` names its class
  column: features, groups and encoding as ``tabular.py`` says;
* a path to a ``.npz`` file with arrays ``x``, ``y``, ``group`` and optionally ``id``, ``split``,
  ``preprocess_scale``, ``preprocess_offset``. It is read with ``allow_pickle=False``: string
  arrays must be saved as unicode (``np.array(values, dtype=str)``), never as Python objects.
  Without ``split``, a seeded 60/40 train/test split, stratified by group, is made (and said so in
  the dataset's description). Members saved uncompressed (``np.savez``) are memory-mapped, not
  read (``npz.py``); a split stored as one block of rows stays mapped in ``subset``. Without ``preprocess_scale``, uint8 samples get scale 1/255 and
  anything else 1.0; the offset defaults to 0.
* ``"hf:PATH_OR_NAME"`` -- a Hugging Face dataset (a ``save_to_disk`` folder or a name in the
  local cache), columns mapped by ``options`` as ``huggingface.py`` says (the extra ``qskew[hf]``);
* an image folder: a CSV with columns ``path,label,group[,id,split]`` (paths relative to the CSV's
  folder), given as the folder (its ``labels.csv``) or the CSV itself. PNG/JPEG images, all of one
  size, are stored as uint8 [H, W, C] with scale 1/255. Without ``id`` the relative path is the id.

Every problem is one ``DatasetError`` naming the file and what is wrong: a missing group column or
key, samples without a group, labels that are not integers, arrays of different lengths, duplicate
ids, an unknown split name, no test split, or a group without test samples.
``validate_for_model`` then checks that a model can take the samples and labels.

One module per kind of source: ``digits.py`` (the built-in ``digits-groups``, its recipe in that
module's docstring), ``adult.py`` (built by ``adult_build.py``), ``tabular.py``, ``npz.py``,
``image_folder.py``; ``assemble.py`` validates what any of them read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.datasets.adult import ADULT_NAME, load_adult
from harness.datasets.digits import DIGITS_NAME, faint_style, load_digits_groups
from harness.datasets.huggingface import fit_to_model, is_hf, load_hf
from harness.datasets.image_folder import CSV_NAME, CSV_REQUIRED, load_image_folder
from harness.datasets.npz import load_npz
from harness.datasets.tabular import TABLE_SUFFIXES, TableOptions, load_table
from harness.errors import DatasetError
from harness.records import GroupedDataset

__all__ = ["ADULT_NAME", "BUILTINS", "DIGITS_NAME", "TableOptions", "faint_style", "fit_to_model", "load",
           "load_adult", "load_digits_groups", "load_hf", "load_image_folder", "load_npz", "load_table",
           "validate_for_model"]

BUILTINS = (DIGITS_NAME, ADULT_NAME)


def load(spec: str | Path, options: TableOptions | None = None) -> GroupedDataset:
    """Load a dataset by built-in name, ``.npz`` path, image folder, CSV or Parquet path.

    ``options`` names a table's columns; for ``adult`` only its ``groups`` and ``intersections``
    count. A table is read as one only when ``options.label`` is set.

    >>> ds = load("digits-groups")
    >>> ds.x.shape, ds.groups
    ((1797, 8, 8, 1), ['faint', 'standard'])
    """
    options = options or TableOptions()
    if str(spec) == ADULT_NAME:
        return load_adult(groups=options.groups, intersections=options.intersections)
    if str(spec) == DIGITS_NAME:
        if options.groups or options.label:
            raise DatasetError(f"{DIGITS_NAME}: has one group attribute and fixed columns; "
                               "[data] label and groups apply to tables and adult")
        return load_digits_groups()
    if is_hf(spec):
        return load_hf(str(spec), options)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset {str(spec)!r} not found: not a built-in ({', '.join(BUILTINS)}) "
                           "and no such file or folder")
    if options.label and (path.suffix.lower() in TABLE_SUFFIXES or (path.is_dir() and any(path.glob("*.parquet")))):
        return load_table(path, options)
    if path.is_dir():
        csv_path = path / CSV_NAME
        if not csv_path.is_file():
            raise DatasetError(f"{path}: an image-folder dataset needs a {CSV_NAME} "
                               f"(columns {','.join(CSV_REQUIRED)}[,id,split])")
        return load_image_folder(csv_path)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.suffix.lower() == ".csv":
        return load_image_folder(path)
    raise DatasetError(f"{path}: unsupported dataset file; give a .npz file, a CSV or a folder with {CSV_NAME}")


def validate_for_model(ds: GroupedDataset, input_shape: tuple, num_classes: int) -> None:
    """Raise DatasetError unless the model (input shape without batch, K classes) fits ``ds``.

    A ``None`` in ``input_shape`` accepts any size in that dimension.
    """
    sample_shape = tuple(int(d) for d in ds.x.shape[1:])
    wanted = tuple(None if d is None else int(d) for d in input_shape)
    if len(wanted) != len(sample_shape) or any(w is not None and w != s for w, s in zip(wanted, sample_shape)):
        raise DatasetError(f"dataset {ds.name!r} has samples of shape {sample_shape} "
                           f"but the model takes {wanted}")
    bad = np.flatnonzero((ds.y < 0) | (ds.y >= num_classes))
    if bad.size:
        first = bad[0]
        raise DatasetError(f"dataset {ds.name!r} has {bad.size} labels outside [0, {num_classes}) for a model "
                           f"with {num_classes} classes (e.g. label {int(ds.y[first])} of {str(ds.ids[first])!r})")
