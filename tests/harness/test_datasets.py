"""Tests for harness/datasets.py: the built-in digits-groups, .npz and image-folder loading, validation."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest

from harness import datasets
from harness.errors import DatasetError


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits-groups")


# --- digits-groups ------------------------------------------------------------------------------

def test_digits_groups_shape_and_preprocess(digits):
    assert digits.x.shape == (1797, 8, 8, 1) and digits.x.dtype == np.uint8
    assert digits.x.max() <= 16
    assert digits.preprocess.scale == pytest.approx(1 / 16) and digits.preprocess.offset == 0
    assert digits.num_classes == 10 and digits.groups == ["faint", "standard"]
    assert digits.ids[1] == "digits-0001" and len(set(digits.ids.tolist())) == 1797
    assert "SYNTHETIC" in digits.description


def test_digits_groups_is_deterministic(digits):
    again = datasets.load("digits-groups")
    assert again.sha256() == digits.sha256()
    np.testing.assert_array_equal(again.ids, digits.ids)
    np.testing.assert_array_equal(again.group, digits.group)
    np.testing.assert_array_equal(again.split, digits.split)


def test_digits_groups_minority_shares(digits):
    train, test = digits.subset("train"), digits.subset("test")
    assert 0.55 < len(train) / len(digits) < 0.65
    share = np.mean(train.group == "faint")
    assert 0.10 <= share <= 0.15
    assert test.group_counts()["faint"] >= 150
    assert set(np.unique(test.y).tolist()) == set(range(10))  # stratified: every class in test


def test_digits_groups_style_shift_is_visible(digits):
    faint = digits.x[digits.group == "faint"].astype(float)
    standard = digits.x[digits.group == "standard"].astype(float)
    assert faint.mean() < 0.5 * standard.mean()
    assert faint.max() <= 7


def test_faint_style_scales_ink_and_slants_top_rows():
    img = np.zeros((1, 8, 8), np.uint8)
    img[0, :, 3] = 16  # a vertical stroke in column 3
    img[0, 0, 7] = 5   # a pixel that the slant pushes off the edge
    out = datasets.faint_style(img)[0]
    assert (out[:4, 4] == 6).all() and (out[:4, 3] == 0).all()   # top rows: shifted right, 16 -> 6
    assert (out[4:, 3] == 6).all() and (out[4:, 4] == 0).all()   # bottom rows stay
    assert out[0, 7] == 0 and out.sum() == 8 * 6


# --- .npz ---------------------------------------------------------------------------------------

def _npz(tmp_path: Path, name: str = "data.npz", **arrays) -> Path:
    n = 10
    base = {"x": np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1),
            "y": np.arange(n) % 3,
            "group": np.array(["a", "b"] * (n // 2)),
            "split": np.array(["train", "test"] * 2 + ["test", "train"] * 3)}
    base.update(arrays)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_loads(tmp_path):
    path = _npz(tmp_path, id=np.array([f"s{i}" for i in range(10)]))
    ds = datasets.load(path)
    assert ds.name == "data" and len(ds) == 10 and ds.num_classes == 3
    assert ds.ids[0] == "s0" and ds.groups == ["a", "b"] and ds.y.dtype == np.int64
    assert ds.preprocess.scale == pytest.approx(1 / 255)
    assert set(ds.split.tolist()) == {"train", "test"}


def test_npz_defaults_seeded_split_and_float_preprocess(tmp_path):
    path = _npz(tmp_path, x=np.random.default_rng(0).random((10, 3)).astype(np.float32), split=None)
    ds = datasets.load(path)
    assert ds.preprocess.scale == 1.0
    assert "seeded" in ds.description
    assert np.sum(ds.split == "test") == 4  # 40 % of each group of 5, rounded
    for g in ("a", "b"):
        assert np.sum((ds.group == g) & (ds.split == "test")) == 2
    np.testing.assert_array_equal(datasets.load(path).split, ds.split)


def test_npz_explicit_preprocess(tmp_path):
    ds = datasets.load(_npz(tmp_path, preprocess_scale=np.float32(0.5), preprocess_offset=np.float32(-1)))
    assert ds.preprocess.scale == 0.5 and ds.preprocess.offset == -1.0


def _error(path) -> str:
    with pytest.raises(DatasetError) as info:
        datasets.load(path)
    return str(info.value)


def test_npz_missing_group_key(tmp_path):
    path = _npz(tmp_path, group=None)
    msg = _error(path)
    assert str(path) in msg and "'group'" in msg


def test_npz_object_array_needs_pickle(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.zeros((2, 2), np.uint8), y=np.array([0, 1]), group=np.array(["a", None], dtype=object))
    msg = _error(path)
    assert "pickle" in msg and "unicode" in msg and "'group'" in msg


@pytest.mark.parametrize("group", [np.array(["a", "", "b", "a", "b", "nan", "a", "b", "a", "b"]),
                                   np.array([1.0, np.nan, 2.0, 1, 2, np.nan, 1, 2, 1, 2])])
def test_npz_missing_group_values(tmp_path, group):
    msg = _error(_npz(tmp_path, group=group, id=np.array([f"s{i}" for i in range(10)])))
    assert "2 of 10 samples have no group" in msg and "'s1', 's5'" in msg


@pytest.mark.parametrize("y, shown", [(np.array([0, 1, 2.5] + [0] * 7), "2.5"),
                                      (np.array(["0", "1", "cat"] + ["0"] * 7), "'cat'")])
def test_npz_labels_not_integers(tmp_path, y, shown):
    msg = _error(_npz(tmp_path, y=y))
    assert "labels must be integers" in msg and shown in msg


def test_npz_negative_label(tmp_path):
    assert "labels must be >= 0" in _error(_npz(tmp_path, y=np.array([0, -1] + [0] * 8)))


def test_npz_mismatched_lengths(tmp_path):
    msg = _error(_npz(tmp_path, y=np.arange(9)))
    assert "mismatched lengths" in msg and "x has 10 samples" in msg and "y has shape (9,)" in msg


def test_npz_duplicate_ids(tmp_path):
    msg = _error(_npz(tmp_path, id=np.array(["s0", "s1", "s0"] + [f"t{i}" for i in range(6)] + ["s1"])))
    assert "2 duplicate ids" in msg and "'s0'" in msg and "'s1'" in msg


def test_npz_group_without_test_samples(tmp_path):
    group = np.array(["a", "b", "a", "b", "a", "c", "a", "c", "a", "b"])
    split = np.array(["test", "test", "test", "test", "test", "train", "test", "train", "test", "test"])
    assert "group 'c' has no test samples" in _error(_npz(tmp_path, group=group, split=split))


def test_npz_no_test_split(tmp_path):
    assert "no test split" in _error(_npz(tmp_path, split=np.array(["train"] * 10)))


def test_npz_unknown_split(tmp_path):
    msg = _error(_npz(tmp_path, split=np.array(["train", "valid"] + ["test"] * 8)))
    assert "unknown split 'valid'" in msg


def test_npz_corrupt_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert str(path) in _error(path)


def test_unknown_spec_and_unsupported_file(tmp_path):
    assert "digits-groups" in _error("no-such-dataset")
    other = tmp_path / "data.json"
    other.write_text("{}")
    assert "unsupported" in _error(other)


# --- image folder -------------------------------------------------------------------------------

def _png(path: Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(array))


def _image_folder(tmp_path: Path, rows: list[str], header: str = "path,label,group,split",
                  sizes: dict[str, tuple] | None = None) -> Path:
    folder = tmp_path / "faces"
    for i, row in enumerate(rows):
        rel = row.split(",")[0]
        shape = (sizes or {}).get(rel, (4, 5, 3))
        _png(folder / rel, np.full(shape, 10 * i, np.uint8))
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


ROWS = ["img/a.png,0,young,train", "img/b.png,1,old,train", "img/c.png,1,young,test", "img/d.png,0,old,test"]


def test_image_folder_loads_by_folder_and_by_csv(tmp_path):
    folder = _image_folder(tmp_path, ROWS)
    ds = datasets.load(folder)
    assert ds.name == "faces" and ds.x.shape == (4, 4, 5, 3) and ds.x.dtype == np.uint8
    assert ds.ids.tolist() == ["img/a.png", "img/b.png", "img/c.png", "img/d.png"]
    assert ds.x[2].max() == 20 and ds.y.tolist() == [0, 1, 1, 0]
    assert ds.preprocess.scale == pytest.approx(1 / 255)
    assert datasets.load(folder / "labels.csv").sha256() == ds.sha256()


def test_image_folder_sizes_differ(tmp_path):
    folder = _image_folder(tmp_path, ROWS, sizes={"img/c.png": (4, 6, 3)})
    msg = _error(folder)
    assert "c.png" in msg and "differs" in msg


def test_image_folder_missing_group_column(tmp_path):
    rows = [",".join(r.split(",")[:2]) for r in ROWS]
    msg = _error(_image_folder(tmp_path, rows, header="path,label"))
    assert "labels.csv" in msg and "'group'" in msg


def test_image_folder_empty_group_and_bad_label(tmp_path):
    folder = _image_folder(tmp_path, ["img/a.png,0,,train", *ROWS[1:]])
    assert "1 of 4 samples have no group" in _error(folder) and "'img/a.png'" in _error(folder)
    folder = _image_folder(tmp_path, ["img/a.png,zero,young,train", *ROWS[1:]])
    assert "labels must be integers; got 'zero'" in _error(folder)


def test_image_folder_missing_image_and_missing_csv(tmp_path):
    folder = _image_folder(tmp_path, ROWS)
    (folder / "img" / "b.png").unlink()
    assert "b.png" in _error(folder)
    (folder / "labels.csv").unlink()
    assert "labels.csv" in _error(folder)


# --- validate_for_model -------------------------------------------------------------------------

def test_validate_for_model(digits):
    datasets.validate_for_model(digits, (8, 8, 1), 10)
    datasets.validate_for_model(digits, (None, None, 1), 10)
    with pytest.raises(DatasetError) as info:
        datasets.validate_for_model(digits, (32, 32, 3), 10)
    assert str(info.value) == ("dataset 'digits-groups' has samples of shape (8, 8, 1) "
                               "but the model takes (32, 32, 3)")
    with pytest.raises(DatasetError, match=r"labels outside \[0, 5\)"):
        datasets.validate_for_model(digits, (8, 8, 1), 5)
