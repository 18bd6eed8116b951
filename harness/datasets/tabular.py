"""Tabular datasets: a CSV or Parquet table (or a folder of Parquet parts) -> ``GroupedDataset``.

The experiment file names the columns (``[data]`` in ``harness.config``)::

    dataset = "people.parquet"      # .csv, .parquet, or a folder of .parquet parts
    label = "income"                # the class column: integers, or strings (sorted -> 0, 1, ...)
    groups = ["sex", "race"]        # one or more group columns (default: a column named "group")
    features = ["age", "job"]       # default (empty): every other column, group columns included
    intersections = true            # also report the crossing of the group columns (sex x race)
    unknown = "error"               # a test category unseen in train: "error" or "ignore"

Optional columns ``id`` (unique sample ids) and ``split`` ("train"/"test"; without it a seeded
60/40 split stratified by group cell is made) are never features. Features become one float32
matrix, fitted on the train split only so that nothing of the test split leaks into it:

* numeric columns (ints, floats) are standardised with the train split's mean and standard
  deviation (a constant column: divided by 1); a missing value is an error naming the column;
* every other column is categorical and one-hot encoded, one column per category seen in the
  train split (sorted); a missing value is the category "(missing)". A category that appears only
  in the test split is an error naming the column and the value, or, with ``unknown = "ignore"``,
  encoded as all zeros.

With several group columns, each sample's group is its cell, the values joined by "\u00d7"; a group
value holding that character, or a missing group value, is an error naming the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.datasets.assemble import MISSING_GROUP_VALUES, SHOWN_IDS, assemble, resolve_split
from harness.errors import DatasetError
from harness.records import CROSS, DEFAULT_ATTRIBUTE, GroupedDataset, Preprocess

if TYPE_CHECKING:
    import pandas as pd

UNKNOWN_CATEGORY = ("error", "ignore")
ID_COLUMN, SPLIT_COLUMN = "id", "split"
MISSING_CATEGORY = "(missing)"
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class TableOptions:
    """Which columns of a table are what (see the module docstring)."""

    label: str = ""
    features: tuple[str, ...] = ()          # () = every column but label, id and split
    groups: tuple[str, ...] = ()            # () = the column "group"
    intersections: bool = False
    unknown: str = "error"
    input: str = ""                         # Hugging Face datasets only (harness.datasets.huggingface)
    split: str = ""
    allow_download: bool = False

    def group_columns(self) -> tuple[str, ...]:
        return tuple(self.groups) or (DEFAULT_ATTRIBUTE,)


def read_table(path: Path) -> "pd.DataFrame":
    """A CSV file, a Parquet file or a folder of Parquet parts as one DataFrame."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError, ImportError) as exc:
        raise DatasetError(f"{path}: cannot read the table ({exc})") from exc
    except Exception as exc:  # pyarrow's own errors on a corrupt file
        raise DatasetError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc


def load_table(path: Path, options: TableOptions) -> GroupedDataset:
    """A tabular dataset from a CSV/Parquet file or folder, columns named by ``options``."""
    if not options.label:
        raise DatasetError(f"{path}: a table needs [data] label = \"COLUMN\" (the class column)")
    frame = read_table(path)
    split = frame[SPLIT_COLUMN].to_numpy() if SPLIT_COLUMN in frame else None
    ids = frame[ID_COLUMN].to_numpy() if ID_COLUMN in frame else None
    return from_frame(path, path.stem if path.is_file() else path.name, frame, options, split, ids)


def from_frame(source: Path, name: str, frame: "pd.DataFrame", options: TableOptions, split=None, ids=None,
               notes: str = "") -> GroupedDataset:
    """Encode a table's features on its train split and build the dataset (checks in ``assemble``)."""
    if options.unknown not in UNKNOWN_CATEGORY:
        raise DatasetError(f"{source}: unknown = {options.unknown!r}; use one of {', '.join(UNKNOWN_CATEGORY)}")
    groups = options.group_columns()
    features = options.features or tuple(c for c in frame.columns
                                         if c not in (options.label, ID_COLUMN, SPLIT_COLUMN))
    _check_columns(source, frame, (options.label, *groups, *features))
    row_ids = (np.array([f"{name}-{i:05d}" for i in range(len(frame))]) if ids is None
               else np.asarray(ids).astype(str))
    cells = group_cells(source, frame, groups, row_ids)
    split, _ = resolve_split(source, split, cells, row_ids)
    labels, label_note = label_codes(frame[options.label])
    x, feature_note = encode_features(source, frame, features, split == "train", options.unknown)
    described = "; ".join(p for p in (f"label {options.label!r}{label_note}", feature_note, notes) if p)
    return assemble(source, name, x, labels, cells, row_ids, split, Preprocess(),
                    attributes=groups, intersections=options.intersections and len(groups) > 1, notes=described)


def _check_columns(source: Path, frame: "pd.DataFrame", wanted) -> None:
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{source}: no column {missing[0]!r}"
                           + (f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
                           + f"; the table has: {', '.join(map(str, frame.columns))}")


def group_cells(source: Path, frame: "pd.DataFrame", columns: tuple[str, ...], ids: np.ndarray) -> np.ndarray:
    """Each row's group cell: the group columns' values, joined by CROSS when there are several."""
    values = []
    for column in columns:
        text = frame[column].astype("string").str.strip()
        missing = text.isna().to_numpy() | text.str.lower().isin(MISSING_GROUP_VALUES).fillna(True).to_numpy()
        if missing.any():
            shown = ", ".join(repr(i) for i in ids[missing][:SHOWN_IDS].tolist())
            raise DatasetError(f"{source}: group column {column!r} has {int(missing.sum())} missing values, "
                               f"first ids: {shown}")
        text = text.to_numpy(dtype=str)
        crossed = np.char.find(text, CROSS) >= 0
        if len(columns) > 1 and crossed.any():
            raise DatasetError(f"{source}: group column {column!r} has the value {str(text[crossed][0])!r}, "
                               f"which holds {CROSS!r}, the character that joins intersections")
        values.append(text)
    if len(values) == 1:
        return values[0]
    return np.array([CROSS.join(parts) for parts in zip(*(v.tolist() for v in values))])


def label_codes(column: "pd.Series") -> tuple[np.ndarray, str]:
    """Integer labels as they are; string labels as codes of their sorted values (and the mapping)."""
    values = column.to_numpy()
    if values.dtype.kind in "iufb":
        return values, ""
    text = column.astype("string").str.strip().to_numpy(dtype=str)
    if all(t.lstrip("-").isdigit() for t in text):
        return text, ""
    classes = sorted(set(text.tolist()))
    codes = np.searchsorted(np.array(classes), text).astype(np.int64)
    return codes, " (classes " + ", ".join(f"{i}={c}" for i, c in enumerate(classes)) + ")"


def encode_features(source: Path, frame: "pd.DataFrame", features, train: np.ndarray,
                    unknown: str) -> tuple[np.ndarray, str]:
    """float32 [N, F] features fitted on the rows where ``train`` is True, and how they were made."""
    blocks, numeric, width = [], [], 0
    for column in features:
        series = frame[column]
        if series.dtype.kind in "iuf":
            blocks.append(_standardised(source, column, series.to_numpy(np.float64), train))
            numeric.append(column)
        else:
            blocks.append(_one_hot(source, column, series, train, unknown))
            width += blocks[-1].shape[1]
    if not blocks:
        raise DatasetError(f"{source}: no feature columns")
    x = np.concatenate(blocks, axis=1).astype(np.float32)
    categorical = len(features) - len(numeric)
    return x, (f"{x.shape[1]} float32 features: {len(numeric)} numeric standardised with the train split's "
               f"mean and std, {categorical} categorical one-hot into {width} columns (categories of the "
               f"train split; unseen ones: {unknown})")


def _standardised(source: Path, column: str, values: np.ndarray, train: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values)
    if bad.any():
        raise DatasetError(f"{source}: numeric feature {column!r} has {int(bad.sum())} missing or infinite values")
    mean, std = values[train].mean(), values[train].std()
    return ((values - mean) / (std if std > 0 else 1.0))[:, None]


def _one_hot(source: Path, column: str, series: "pd.Series", train: np.ndarray, unknown: str) -> np.ndarray:
    text = series.astype("string").str.strip().fillna(MISSING_CATEGORY).to_numpy(dtype=str)
    categories = np.unique(text[train])
    index = np.searchsorted(categories, text)
    known = (index < categories.size) & (categories[np.minimum(index, categories.size - 1)] == text)
    if not known.all() and unknown == "error":
        raise DatasetError(f"{source}: categorical feature {column!r} has the value {str(text[~known][0])!r} in "
                           f"{int((~known).sum())} rows outside the train split, a category the train split "
                           "does not have; fix the data or set [data] unknown = \"ignore\" (all-zero encoding)")
    out = np.zeros((text.size, categories.size), dtype=np.float32)
    rows = np.flatnonzero(known)
    out[rows, index[rows]] = 1.0
    return out
