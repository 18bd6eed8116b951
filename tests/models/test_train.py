"""Tests for models/train.py: small_cnn really learns, the cache is used, training is deterministic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models import small_cnn
from models.train import cache_key, train_or_load


@pytest.fixture(scope="module")
def trained(digits, tmp_cache):
    return train_or_load("small_cnn", digits, seed=0, progress=False)


def _accuracy(model, ds) -> float:
    test = ds.subset("test")
    return float(np.mean(model.predict(test.preprocess.apply(test.x), verbose=0).argmax(1) == test.y))


def test_small_cnn_trains_well(trained, digits, tmp_cache):
    assert not trained.from_cache
    assert _accuracy(trained.model, digits) >= 0.9
    assert len(trained.history["accuracy"]) == small_cnn.RECIPE.epochs
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    assert trained.path == tmp_cache / "models" / f"{trained.cache_key}.keras"
    assert trained.train_s > 0


def test_second_call_comes_from_cache(trained, digits):
    again = train_or_load("small_cnn", digits, seed=0, progress=False)
    assert again.from_cache and again.path == trained.path and again.cache_key == trained.cache_key
    assert again.history == trained.history and again.train_s == pytest.approx(trained.train_s)
    test = digits.subset("test")
    x = test.preprocess.apply(test.x[:50])
    np.testing.assert_array_equal(again.model.predict(x, verbose=0), trained.model.predict(x, verbose=0))


def test_cache_key_covers_seed_recipe_and_data(digits):
    base = cache_key("small_cnn", digits, 0)
    assert cache_key("small_cnn", digits, 0) == base
    assert cache_key("small_cnn", digits, 1) != base
    assert cache_key("small_cnn", digits, 0, dataclasses.replace(small_cnn.RECIPE, epochs=2)) != base
    assert cache_key("mobilenet_v2", digits, 0) != base
    assert cache_key("small_cnn", digits.take(np.arange(100)), 0) != base


def test_deterministic_and_corrupt_cache_retrains(digits, tmp_path):
    """Same seed in a fresh cache gives the same weights; a corrupt cache entry is retrained."""
    short = dataclasses.replace(small_cnn.RECIPE, epochs=2)
    first = train_or_load("small_cnn", digits, seed=5, cache_dir=tmp_path / "a", progress=False, recipe=short)
    fresh = train_or_load("small_cnn", digits, seed=5, cache_dir=tmp_path / "b", progress=False, recipe=short)
    assert not fresh.from_cache and fresh.cache_key == first.cache_key
    for a, b in zip(fresh.model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    fresh.path.write_bytes(b"not a keras zip")
    retrained = train_or_load("small_cnn", digits, seed=5, cache_dir=tmp_path / "b", progress=False, recipe=short)
    assert not retrained.from_cache
    np.testing.assert_array_equal(retrained.model.get_weights()[0], first.model.get_weights()[0])


def test_no_train_split(digits, tmp_path):
    from harness.errors import DatasetError

    with pytest.raises(DatasetError, match="no train split"):
        train_or_load("small_cnn", digits.subset("test"), cache_dir=tmp_path, progress=False)
