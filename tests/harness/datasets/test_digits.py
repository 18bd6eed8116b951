"""harness/datasets/digits.py: the built-in digits-groups dataset and its style shift."""

from __future__ import annotations


import numpy as np
import pytest

from harness import datasets


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


def test_a_cached_load_is_the_built_dataset_without_scikit_learn(tmp_path, monkeypatch):
    from harness.datasets import digits as module

    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path))
    built = module.load_digits_groups()  # builds with scikit-learn and stores it
    (stored,) = (tmp_path / module.CACHE_SUB).glob("*.npz")

    def no_build():
        raise AssertionError("built again")

    monkeypatch.setattr(module, "_build", no_build)
    cached = module.load_digits_groups()
    assert cached.sha256() == built.sha256() and cached.description == built.description
    assert not cached.x.flags.writeable and cached.x.dtype == np.uint8 and cached.ids.dtype == built.ids.dtype
    stored.write_bytes(b"not an npz")  # damaged: built again (here: refused, so it shows)
    with pytest.raises(AssertionError, match="built again"):
        module.load_digits_groups()
