"""The checks every user dataset passes, whatever file it came from, and the frozen result.

A loader reads raw columns (samples, labels, groups, optional ids and split); :func:`assemble`
checks them (lengths, ids, finite inputs, integer labels, groups, split names, test samples per group) and makes
the seeded split when none is given. Every problem is one ``DatasetError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import DatasetError
from harness.records import DEFAULT_ATTRIBUTE, SPLITS, GroupedDataset, Preprocess, drop_pages, row_chunks

DEFAULT_TEST_FRACTION = 0.4       # user data without a split column: 60/40 train/test
DEFAULT_SPLIT_SEED = 0            # ... made with this seed, stratified by group
MISSING_GROUP_VALUES = frozenset({"", "nan", "none", "null"})  # what pandas/np.str_ make of a missing value
SHOWN_IDS = 5                     # how many offending ids an error message lists
ID_HASH_ROWS = 65_536             # ids hashed per step by the duplicate check (a few MB of code points)
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)  # FNV-1a, 64 bit


def assemble(source: Path, name: str, x: np.ndarray, y, group, ids, split, preprocess: Preprocess,
             attributes: tuple[str, ...] = (DEFAULT_ATTRIBUTE,), intersections: bool = False,
             notes: str = "") -> GroupedDataset:
    """Validate raw columns from any loader and build the dataset (``notes`` end its description)."""
    n = x.shape[0]
    columns = {"y": y, "group": group, "id": ids, "split": split}
    wrong = [f"{key} has shape {col.shape}" for key, col in columns.items()
             if col is not None and col.shape != (n,)]
    if wrong:
        raise DatasetError(f"{source}: mismatched lengths: x has {n} samples but {', '.join(wrong)} "
                           f"(each must be 1-D of length {n})")
    if n == 0:
        raise DatasetError(f"{source}: the dataset has no samples")
    ids = _ids(source, ids, n)
    _check_finite(source, x, ids)
    labels = _labels(source, y, ids)
    groups = _groups(source, group, ids)
    split, described = resolve_split(source, split, groups, ids)
    _check_test_groups(source, split, groups)
    description = "; ".join(p for p in (f"{n} samples from {source}", described, notes) if p)
    return freeze(GroupedDataset(name=name, ids=ids, x=x, y=labels, group=groups, split=split,
                                  num_classes=int(labels.max()) + 1, preprocess=preprocess,
                                  description=description, attributes=tuple(attributes),
                                  intersections=bool(intersections)))


def _ids(source: Path, ids, n: int) -> np.ndarray:
    """The given ids as strings, checked unique; else ``<file stem>-00000``, ``-00001``, ... (made
    as one numpy string array: no Python string per sample)."""
    if ids is None:
        digits = max(5, len(str(n - 1)))
        return np.char.add(f"{source.stem}-", np.char.zfill(np.arange(n).astype(f"<U{digits}"), 5))
    ids = np.asarray(ids).astype(str, copy=False)
    dups = duplicates(ids)
    if dups.size:
        shown = ", ".join(repr(d) for d in dups[:SHOWN_IDS].tolist())
        raise DatasetError(f"{source}: {dups.size} duplicate ids, e.g. {shown}")
    return ids


def duplicates(ids: np.ndarray) -> np.ndarray:
    """The ids (a numpy string array) that occur more than once, sorted.

    Found without sorting a copy of the strings: a 64-bit FNV-1a hash of each id's code points,
    computed chunk by chunk (``records.row_chunks``), names the candidates (equal hashes), and
    only they are compared as strings. Memory: a few int64 per id, whatever the ids' length."""
    hashes = np.empty(ids.shape[0], np.uint64)
    for start, chunk in row_chunks(ids, ID_HASH_ROWS):
        codes = np.ascontiguousarray(chunk).view(np.uint32).reshape(chunk.shape[0], -1)
        h = np.full(chunk.shape[0], _FNV_OFFSET, np.uint64)
        for column in codes.T:
            h = (h ^ column.astype(np.uint64)) * _FNV_PRIME  # wraps modulo 2**64, as FNV does
        hashes[start:start + chunk.shape[0]] = h
    order = np.argsort(hashes, kind="stable")
    same = hashes[order[1:]] == hashes[order[:-1]]
    candidates = np.union1d(order[1:][same], order[:-1][same])
    names, counts = np.unique(ids[candidates], return_counts=True)
    return names[counts > 1]


def _check_finite(source: Path, x: np.ndarray, ids: np.ndarray) -> None:
    """NaN or inf in a sample's inputs would give NaN logits (or a quantized garbage value) on every
    device: refuse them here, naming the samples."""
    if x.dtype.kind not in "fc":
        return
    bad = np.concatenate([start + np.flatnonzero(~np.isfinite(chunk.reshape(chunk.shape[0], -1)).all(axis=1))
                          for start, chunk in row_chunks(x)])
    if bad.size:
        shown = ", ".join(repr(str(i)) for i in ids[bad][:SHOWN_IDS].tolist())
        raise DatasetError(f"{source}: {bad.size} of {len(ids)} samples have NaN or infinite inputs, "
                           f"first ids: {shown}")


def _labels(source: Path, y: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if y.dtype.kind in "iu":
        labels = y.astype(np.int64, copy=False)  # int64 labels of a mapped file stay mapped
    elif y.dtype.kind == "f":  # whole floats (e.g. from pandas) are fine; 2.5 or NaN are not
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise DatasetError(f"{source}: labels must be integers; got {y[i].item()!r} for id {str(ids[i])!r}")
        labels = y.astype(np.int64)
    elif y.dtype.kind == "U":
        labels = np.empty(y.shape[0], dtype=np.int64)
        for i, text in enumerate(y.tolist()):
            try:
                labels[i] = int(text.strip())
            except ValueError:
                raise DatasetError(f"{source}: labels must be integers; got {text!r} "
                                   f"for id {str(ids[i])!r}") from None
    else:
        raise DatasetError(f"{source}: labels must be integers; got an array of dtype {y.dtype}")
    negative = np.flatnonzero(labels < 0)
    if negative.size:
        first = negative[0]
        raise DatasetError(f"{source}: labels must be >= 0; got {labels[first]} for id {str(ids[first])!r}")
    return labels


def _groups(source: Path, group: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if group.dtype.kind not in "UiubfS":
        raise DatasetError(f"{source}: 'group' must hold strings or numbers, got dtype {group.dtype}")
    if group.dtype.kind == "U" and _clean_text(group):
        return group  # e.g. a memory-mapped column: kept as it is, not copied
    if group.dtype.kind == "f":
        missing = ~np.isfinite(group)
        text = np.array([f"{v:g}" for v in group.tolist()])
    else:
        text = np.char.strip(group.astype(str))
        missing = np.isin(np.char.lower(text), list(MISSING_GROUP_VALUES))
    if missing.any():
        first = ", ".join(repr(i) for i in ids[missing][:SHOWN_IDS].tolist())
        raise DatasetError(f"{source}: {int(missing.sum())} of {len(ids)} samples have no group "
                           f"(missing, empty or NaN), first ids: {first}")
    return text


def _clean_text(group: np.ndarray) -> bool:
    """True when no group label has surrounding spaces or means "missing" (checked chunk by chunk)."""
    for _, chunk in row_chunks(group):
        text = np.char.strip(chunk)
        if not (text == chunk).all() or np.isin(np.char.lower(text), list(MISSING_GROUP_VALUES)).any():
            return False
    return True


def resolve_split(source: Path, split, groups: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, str]:
    """The checked split column, or the seeded one when ``split`` is None, and how it was made."""
    if split is None:
        return _seeded_split(groups), (f"no split given: seeded {1 - DEFAULT_TEST_FRACTION:.0%}/"
                                       f"{DEFAULT_TEST_FRACTION:.0%} train/test split stratified by group "
                                       f"(seed {DEFAULT_SPLIT_SEED})")
    split = np.asarray(split)
    if split.dtype == np.dtype("<U5") and all(np.isin(c, SPLITS).all() for _, c in row_chunks(split)):
        return split, ""  # clean already (e.g. a memory-mapped column): kept as it is, not copied
    split = np.char.lower(np.char.strip(split.astype(str)))
    unknown = np.flatnonzero(~np.isin(split, SPLITS))
    if unknown.size:
        raise DatasetError(f"{source}: unknown split {str(split[unknown[0]])!r} for id {str(ids[unknown[0]])!r} "
                           f"({unknown.size} samples); splits are {', '.join(SPLITS)}")
    return split.astype("<U5"), ""


def _seeded_split(groups: np.ndarray) -> np.ndarray:
    """60/40 train/test per group (at least one test sample per group), seeded."""
    rng = np.random.default_rng(DEFAULT_SPLIT_SEED)
    split = np.full(groups.shape[0], "train", dtype="<U5")
    for name in np.unique(groups).tolist():
        members = rng.permutation(np.flatnonzero(groups == name))
        n_test = max(1, round(DEFAULT_TEST_FRACTION * members.size))
        split[members[:n_test]] = "test"
    return split


def _check_test_groups(source: Path, split: np.ndarray, groups: np.ndarray) -> None:
    test = split == "test"
    if not test.any():
        raise DatasetError(f"{source}: no test split: no sample has split 'test'")
    empty = np.setdiff1d(np.unique(groups), np.unique(groups[test])).tolist()
    if empty:
        raise DatasetError(f"{source}: group {empty[0]!r} has no test samples"
                           + (f" (nor do {', '.join(map(repr, empty[1:]))})" if len(empty) > 1 else ""))


def freeze(ds: GroupedDataset) -> GroupedDataset:
    """Make the arrays read-only: a dataset is a record, and stages must not edit it in place."""
    for arr in (ds.ids, ds.x, ds.y, ds.group, ds.split):
        arr.flags.writeable = False
        drop_pages(arr)  # columns mapped from the file: the checks above read them; nothing stays resident
    return ds
