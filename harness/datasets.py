"""Built-in and user datasets -> ``GroupedDataset``, validated once, on entry.

``load(spec)`` takes one of:

* ``"digits-groups"`` -- the built-in dataset (no download), recipe below;
* a path to a ``.npz`` file with arrays ``x``, ``y``, ``group`` and optionally ``id``, ``split``,
  ``preprocess_scale``, ``preprocess_offset``. It is read with ``allow_pickle=False``: string
  arrays must be saved as unicode (``np.array(values, dtype=str)``), never as Python objects.
  Without ``split``, a seeded 60/40 train/test split, stratified by group, is made (and said so in
  the dataset's description). Without ``preprocess_scale``, uint8 samples get scale 1/255 and
  anything else 1.0; the offset defaults to 0.
* an image folder: a CSV with columns ``path,label,group[,id,split]`` (paths relative to the CSV's
  folder), given as the folder (its ``labels.csv``) or the CSV itself. PNG/JPEG images, all of one
  size, are stored as uint8 [H, W, C] with scale 1/255. Without ``id`` the relative path is the id.

Every problem is one ``DatasetError`` naming the file and what is wrong: a missing group column or
key, samples without a group, labels that are not integers, arrays of different lengths, duplicate
ids, an unknown split name, no test split, or a group without test samples.
``validate_for_model`` then checks that a model can take the samples and labels.

The built-in ``digits-groups`` recipe (the group attribute is SYNTHETIC: it is a style shift we
apply ourselves, not a property of the people who wrote the digits):

1. Samples: scikit-learn's bundled ``load_digits()`` -- 1,797 8x8 grey images with ink values
   0..16, labels 0..9. Stored as uint8 [N, 8, 8, 1]; preprocess ``x / 16`` (scale 1/16, offset 0).
   Sample ``i`` (0-based, in scikit-learn's order) has the id ``digits-{i:04d}``; rows keep that order.
2. Split: ``sklearn.model_selection.train_test_split(range(1797), test_size=0.4, stratify=y,
   random_state=0)`` -> 1,078 train, 719 test.
3. Groups: ``rng = numpy.random.default_rng(1)``; ``round(0.12 * 1078) = 129`` train samples
   (``rng.choice`` over the sorted train indices, without replacement), then ``round(0.25 * 719) =
   180`` test samples (the same way over the sorted test indices), are group ``"faint"``; all
   others are ``"standard"``.
4. Style of ``"faint"`` images: ink scaled by 0.4 and rounded half up (``floor(v * 0.4 + 0.5)``,
   so 0..16 becomes 0..6), then slanted: the top four rows move one pixel to the right (the
   rightmost pixel of those rows drops off, a zero column enters on the left).

The test split's minority share is enriched on purpose: 25 % of the test split gives about 180
faint samples, enough for tight per-group confidence intervals. What makes "faint" a minority is
its 12 % share of the training split, which is what the model learns from.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from harness.errors import DatasetError
from harness.records import SPLITS, GroupedDataset, Preprocess

DIGITS_NAME = "digits-groups"
DIGITS_TEST_FRACTION = 0.4        # ~60/40 split: enough test samples for per-group intervals
DIGITS_SPLIT_SEED = 0             # fixed: the split must be the same on every machine
DIGITS_GROUP_SEED = 1             # fixed: the group assignment must be the same on every machine
DIGITS_FAINT_TRAIN_SHARE = 0.12   # the minority's share of the training data (what makes it a minority)
DIGITS_FAINT_TEST_SHARE = 0.25    # enriched in test so the minority has >= ~150 samples to measure
DIGITS_FAINT_INK = 0.4            # faint ink: intensity factor applied to the minority's images
DIGITS_SLANT_ROWS = 4             # rows (from the top) shifted one pixel right: a visible slant
DIGITS_MAX_INK = 16               # load_digits() values are 0..16

DEFAULT_TEST_FRACTION = 0.4       # user data without a split column: 60/40 train/test
DEFAULT_SPLIT_SEED = 0            # ... made with this seed, stratified by group
CSV_NAME = "labels.csv"           # the CSV looked up when the spec is a folder
CSV_REQUIRED = ("path", "label", "group")
MISSING_GROUP_VALUES = frozenset({"", "nan", "none", "null"})  # what pandas/np.str_ make of a missing value
SHOWN_IDS = 5                     # how many offending ids an error message lists


def load(spec: str | Path) -> GroupedDataset:
    """Load a dataset by built-in name, ``.npz`` path, image folder or CSV path.

    >>> ds = load("digits-groups")
    >>> ds.x.shape, ds.groups
    ((1797, 8, 8, 1), ['faint', 'standard'])
    """
    if str(spec) in BUILTINS:
        return BUILTINS[str(spec)]()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset {str(spec)!r} not found: not a built-in ({', '.join(BUILTINS)}) "
                           "and no such file or folder")
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


# --- built-in ---------------------------------------------------------------------------------------

def load_digits_groups() -> GroupedDataset:
    """The built-in ``digits-groups`` dataset; the recipe is in the module docstring."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    n = labels.shape[0]
    x = images.reshape(n, 8, 8).astype(np.uint8)
    train_idx, test_idx = train_test_split(np.arange(n), test_size=DIGITS_TEST_FRACTION,
                                           stratify=labels, random_state=DIGITS_SPLIT_SEED)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    split = np.full(n, "train", dtype="<U5")
    split[test_idx] = "test"

    rng = np.random.default_rng(DIGITS_GROUP_SEED)
    faint = np.concatenate([
        rng.choice(train_idx, size=round(DIGITS_FAINT_TRAIN_SHARE * train_idx.size), replace=False),
        rng.choice(test_idx, size=round(DIGITS_FAINT_TEST_SHARE * test_idx.size), replace=False),
    ])
    group = np.full(n, "standard", dtype="<U8")
    group[faint] = "faint"
    x[faint] = faint_style(x[faint])

    ds = GroupedDataset(
        name=DIGITS_NAME,
        ids=np.array([f"digits-{i:04d}" for i in range(n)]),
        x=x[..., np.newaxis], y=labels.astype(np.int64), group=group, split=split, num_classes=10,
        preprocess=Preprocess(scale=1.0 / DIGITS_MAX_INK, offset=0.0),
        description=("scikit-learn digits (8x8, 10 classes) with a SYNTHETIC group attribute: 'faint' "
                     f"images have {DIGITS_FAINT_INK:g}x ink and a one-pixel slant; "
                     f"{DIGITS_FAINT_TRAIN_SHARE:.0%} of train, {DIGITS_FAINT_TEST_SHARE:.0%} of test "
                     "(enriched for tighter per-group intervals)"),
    )
    return _freeze(ds)


def faint_style(images: np.ndarray) -> np.ndarray:
    """The 'faint' style shift for uint8 [M, 8, 8] digits: 0.4x ink (rounded half up) and a slant."""
    ink = np.floor(images.astype(np.float64) * DIGITS_FAINT_INK + 0.5).astype(np.uint8)
    out = ink.copy()
    out[:, :DIGITS_SLANT_ROWS, 1:] = ink[:, :DIGITS_SLANT_ROWS, :-1]
    out[:, :DIGITS_SLANT_ROWS, 0] = 0
    return out


BUILTINS = {DIGITS_NAME: load_digits_groups}


# --- .npz ------------------------------------------------------------------------------------------

def load_npz(path: Path) -> GroupedDataset:
    """A dataset from a ``.npz`` file (keys in the module docstring); never unpickles."""
    arrays = _read_npz(path)
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
    return _assemble(path, path.stem, x, arrays["y"], arrays["group"], arrays.get("id"), arrays.get("split"),
                     preprocess)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
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


# --- image folder ---------------------------------------------------------------------------------

def load_image_folder(csv_path: Path) -> GroupedDataset:
    """A dataset from a CSV ``path,label,group[,id,split]`` and the images it names."""
    rows = _read_csv(csv_path)
    column = lambda name: np.array([(r.get(name) or "").strip() for r in rows])  # noqa: E731
    ids = column("id") if "id" in rows[0] else column("path")
    split = column("split") if "split" in rows[0] else None
    x = _read_images(csv_path, column("path").tolist())
    return _assemble(csv_path, csv_path.parent.name or csv_path.stem, x, column("label"), column("group"),
                     ids, split, Preprocess(scale=1.0 / 255.0, offset=0.0))


def _read_csv(csv_path: Path) -> list[dict]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read the CSV ({exc})") from exc
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(repr(c) for c in missing)}; expected "
                           f"{','.join(CSV_REQUIRED)}[,id,split], found: {','.join(header) or 'no header'}")
    if not rows:
        raise DatasetError(f"{csv_path}: has a header but no rows")
    return rows


def _read_images(csv_path: Path, rel_paths: list[str]) -> np.ndarray:
    decode = _image_decoder()
    images, first = [], None
    for rel in rel_paths:
        file = csv_path.parent / rel
        try:
            img = decode(file)
        except Exception as exc:  # missing file, not an image, unsupported format
            raise DatasetError(f"{file}: cannot read image listed in {csv_path} ({exc})") from exc
        if first is None:
            first = (file, img.shape)
        elif img.shape != first[1]:
            raise DatasetError(f"{file}: image shape {img.shape} differs from {first[1]} of {first[0]}; "
                               "all images of a dataset must have the same size and channels")
        images.append(img)
    return np.stack(images)


def _image_decoder():
    """PIL when installed (fast to import), else TensorFlow (a dependency anyway); uint8 [H, W, C]."""
    try:
        from PIL import Image
    except ImportError:
        import tensorflow as tf

        def decode_tf(file: Path) -> np.ndarray:
            data = tf.io.read_file(str(file))
            return tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False).numpy()
        return decode_tf

    def decode_pil(file: Path) -> np.ndarray:
        with Image.open(file) as im:
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("L" if im.mode in ("1", "I", "I;16", "F") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
        return arr[..., np.newaxis] if arr.ndim == 2 else arr
    return decode_pil


# --- shared validation ----------------------------------------------------------------------------

def _assemble(source: Path, name: str, x: np.ndarray, y, group, ids, split,
              preprocess: Preprocess) -> GroupedDataset:
    """Validate raw columns from any loader and build the dataset."""
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
    labels = _labels(source, y, ids)
    groups = _groups(source, group, ids)
    split, described = _splits(source, split, groups, ids)
    _check_test_groups(source, split, groups)
    description = f"{n} samples from {source}" + (f"; {described}" if described else "")
    return _freeze(GroupedDataset(name=name, ids=ids, x=x, y=labels, group=groups, split=split,
                                  num_classes=int(labels.max()) + 1, preprocess=preprocess,
                                  description=description))


def _ids(source: Path, ids, n: int) -> np.ndarray:
    if ids is None:
        return np.array([f"{source.stem}-{i:05d}" for i in range(n)])
    ids = np.asarray(ids).astype(str)
    names, counts = np.unique(ids, return_counts=True)
    dups = names[counts > 1]
    if dups.size:
        shown = ", ".join(repr(d) for d in dups[:SHOWN_IDS].tolist())
        raise DatasetError(f"{source}: {dups.size} duplicate ids, e.g. {shown}")
    return ids


def _labels(source: Path, y: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if y.dtype.kind in "iu":
        labels = y.astype(np.int64)
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


def _splits(source: Path, split, groups: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, str]:
    if split is None:
        return _seeded_split(groups), (f"no split given: seeded {1 - DEFAULT_TEST_FRACTION:.0%}/"
                                       f"{DEFAULT_TEST_FRACTION:.0%} train/test split stratified by group "
                                       f"(seed {DEFAULT_SPLIT_SEED})")
    split = np.char.lower(np.char.strip(np.asarray(split).astype(str)))
    unknown = np.flatnonzero(~np.isin(split, SPLITS))
    if unknown.size:
        raise DatasetError(f"{source}: unknown split {str(split[unknown[0]])!r} for id {str(ids[unknown[0]])!r} "
                           f"({unknown.size} samples); splits are {', '.join(SPLITS)}")
    return split.astype("<U5"), ""


def _seeded_split(groups: np.ndarray) -> np.ndarray:
    """60/40 train/test per group (at least one test sample per group), seeded."""
    rng = np.random.default_rng(DEFAULT_SPLIT_SEED)
    split = np.full(groups.shape[0], "train", dtype="<U5")
    for name in sorted(set(groups.tolist())):
        members = rng.permutation(np.flatnonzero(groups == name))
        n_test = max(1, round(DEFAULT_TEST_FRACTION * members.size))
        split[members[:n_test]] = "test"
    return split


def _check_test_groups(source: Path, split: np.ndarray, groups: np.ndarray) -> None:
    test = split == "test"
    if not test.any():
        raise DatasetError(f"{source}: no test split: no sample has split 'test'")
    empty = sorted(set(groups.tolist()) - set(groups[test].tolist()))
    if empty:
        raise DatasetError(f"{source}: group {empty[0]!r} has no test samples"
                           + (f" (nor do {', '.join(map(repr, empty[1:]))})" if len(empty) > 1 else ""))


def _freeze(ds: GroupedDataset) -> GroupedDataset:
    """Make the arrays read-only: a dataset is a record, and stages must not edit it in place."""
    for arr in (ds.ids, ds.x, ds.y, ds.group, ds.split):
        arr.flags.writeable = False
    return ds
