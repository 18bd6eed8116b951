"""The built-in ``digits-groups`` dataset: scikit-learn's digits with a synthetic group.

The recipe (the group attribute is SYNTHETIC: it is a style shift we
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

The assembled dataset is cached under ``<cache>/datasets/`` (keyed by the scikit-learn and numpy
versions and this module's source), so a later load imports no scikit-learn (about 3 s).

The test split's minority share is enriched on purpose: 25 % of the test split gives about 180
faint samples, enough for tight per-group confidence intervals. What makes "faint" a minority is
its 12 % share of the training split, which is what the model learns from.
"""


from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from harness.datasets.assemble import freeze
from harness.fsutil import atomic_write_bytes
from harness.records import GroupedDataset, Preprocess

log = logging.getLogger(__name__)

DIGITS_NAME = "digits-groups"
DIGITS_TEST_FRACTION = 0.4        # ~60/40 split: enough test samples for per-group intervals
DIGITS_SPLIT_SEED = 0             # fixed: the split must be the same on every machine
DIGITS_GROUP_SEED = 1             # fixed: the group assignment must be the same on every machine
DIGITS_FAINT_TRAIN_SHARE = 0.12   # the minority's share of the training data (what makes it a minority)
DIGITS_FAINT_TEST_SHARE = 0.25    # enriched in test so the minority has >= ~150 samples to measure
DIGITS_FAINT_INK = 0.4            # faint ink: intensity factor applied to the minority's images
DIGITS_SLANT_ROWS = 4             # rows (from the top) shifted one pixel right: a visible slant
DIGITS_MAX_INK = 16               # load_digits() values are 0..16
CACHE_SUB = "datasets"            # sub-folder of the qskew cache
CACHE_FORMAT = 1                  # bump when the cached file changes shape
ARRAYS = ("ids", "x", "y", "group", "split")


def load_digits_groups() -> GroupedDataset:
    """The built-in ``digits-groups`` dataset (the recipe is in the module docstring), from the
    host cache when an earlier load built it with the same scikit-learn, numpy and recipe."""
    from harness.paths import cache_dir

    path = cache_dir(CACHE_SUB) / f"{DIGITS_NAME}-{_cache_key()}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return _dataset(**{name: stored[name] for name in ARRAYS})
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cached dataset %s is unreadable (%s); building it again", path, exc)
    ds = _build()
    buf = io.BytesIO()
    np.savez(buf, **{name: getattr(ds, name) for name in ARRAYS})
    atomic_write_bytes(path, buf.getvalue())
    return ds


def _cache_key() -> str:
    from importlib.metadata import version

    parts = {"format": CACHE_FORMAT, "scikit-learn": version("scikit-learn"), "numpy": np.__version__,
             "recipe_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _build() -> GroupedDataset:
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

    return _dataset(ids=np.array([f"digits-{i:04d}" for i in range(n)]), x=x[..., np.newaxis],
                    y=labels.astype(np.int64), group=group, split=split)


def _dataset(ids, x, y, group, split) -> GroupedDataset:
    ds = GroupedDataset(
        name=DIGITS_NAME, ids=ids, x=x, y=y, group=group, split=split, num_classes=10,
        preprocess=Preprocess(scale=1.0 / DIGITS_MAX_INK, offset=0.0),
        description=("scikit-learn digits (8x8, 10 classes) with a SYNTHETIC group attribute: 'faint' "
                     f"images have {DIGITS_FAINT_INK:g}x ink and a one-pixel slant; "
                     f"{DIGITS_FAINT_TRAIN_SHARE:.0%} of train, {DIGITS_FAINT_TEST_SHARE:.0%} of test "
                     "(enriched for tighter per-group intervals)"),
    )
    return freeze(ds)


def faint_style(images: np.ndarray) -> np.ndarray:
    """The 'faint' style shift for uint8 [M, 8, 8] digits: 0.4x ink (rounded half up) and a slant."""
    ink = np.floor(images.astype(np.float64) * DIGITS_FAINT_INK + 0.5).astype(np.uint8)
    out = ink.copy()
    out[:, :DIGITS_SLANT_ROWS, 1:] = ink[:, :DIGITS_SLANT_ROWS, :-1]
    out[:, :DIGITS_SLANT_ROWS, 0] = 0
    return out
