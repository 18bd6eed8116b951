"""Tests for harness/reference.py: host FP32 logits, aligned with the test ids."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness.errors import ModelError
from harness.records import GroupedDataset, Preprocess
from harness.reference import reference_logits


def _dataset(n: int = 37) -> GroupedDataset:
    rng = np.random.default_rng(0)
    return GroupedDataset(
        name="tiny", ids=np.array([f"s{i:03d}" for i in range(n)]),
        x=rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8), y=rng.integers(0, 4, n),
        group=np.array(["a", "b"])[rng.integers(0, 2, n)], split=np.full(n, "test"), num_classes=4,
        preprocess=Preprocess(scale=1 / 255, offset=-0.5),
    )


@pytest.fixture(scope="module")
def model():
    import keras

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(3))(x))


def test_matches_predict_on_preprocessed_inputs(model):
    ds = _dataset()
    ref = reference_logits(model, ds, batch_size=8)
    expected = model.predict(ds.x.astype(np.float32) / 255 - 0.5, verbose=0)
    assert ref.values.shape == (37, 4) and ref.values.dtype == np.float32
    np.testing.assert_allclose(ref.values, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ref.ids, ds.ids)


def test_rows_follow_the_dataset_order(model):
    ds = _dataset()
    order = np.random.default_rng(1).permutation(len(ds))
    shuffled = reference_logits(model, ds.take(order))
    np.testing.assert_array_equal(shuffled.ids, ds.ids[order])
    np.testing.assert_allclose(shuffled.values, reference_logits(model, ds).values[order], rtol=1e-6, atol=1e-6)


def test_model_that_does_not_fit_raises_model_error():
    import keras

    inputs = keras.Input((5, 5, 1))
    wrong = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)), name="wrong_shape")
    with pytest.raises(ModelError, match="wrong_shape"):
        reference_logits(wrong, _dataset())


def test_cached_reference_is_computed_once_per_model_and_test_set(model, tmp_path):
    from harness.reference import cached_reference_logits

    ds, loads = _dataset(), []

    def load():
        loads.append(1)
        return model

    first, hit1 = cached_reference_logits(load, "model-a", ds, cache_root=tmp_path)
    again, hit2 = cached_reference_logits(load, "model-a", ds, cache_root=tmp_path)
    assert (hit1, hit2, len(loads)) == (False, True, 1)
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.ids, ds.ids)
    np.testing.assert_array_equal(first.values, reference_logits(model, ds).values)
    # another model, other samples or other preprocessing: another entry, computed again
    cached_reference_logits(load, "model-b", ds, cache_root=tmp_path)
    cached_reference_logits(load, "model-a", ds.take(np.arange(30)), cache_root=tmp_path)
    import dataclasses
    cached_reference_logits(load, "model-a", dataclasses.replace(ds, preprocess=Preprocess(scale=1 / 255)),
                            cache_root=tmp_path)
    assert len(loads) == 4 and len(list(tmp_path.glob("*.npy"))) == 4


def test_a_damaged_cache_entry_is_computed_again(model, tmp_path):
    from harness.reference import cached_reference_logits

    ds = _dataset()
    first, _ = cached_reference_logits(lambda: model, "m", ds, cache_root=tmp_path)
    first_values = np.array(first.values)  # a copy: first.values maps the file damaged below
    (entry,) = tmp_path.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:100])
    again, hit = cached_reference_logits(lambda: model, "m", ds, cache_root=tmp_path)
    assert not hit
    np.testing.assert_array_equal(again.values, first_values)


def test_the_cache_entry_is_written_batch_by_batch_and_read_memory_mapped(model, tmp_path):
    from harness.reference import cached_reference_logits, reference_batches

    ds = _dataset()
    batches = list(reference_batches(model, ds, batch_size=8))
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]
    ref, hit = cached_reference_logits(lambda: model, "m", ds, cache_root=tmp_path)
    assert not hit and isinstance(ref.values, np.memmap) and ref.values.mode == "r"
    np.testing.assert_array_equal(ref.values, np.concatenate(batches))  # same batches: same bits
    (entry,) = tmp_path.glob("*.npy")
    np.testing.assert_array_equal(np.load(entry), ref.values)  # a plain .npy [N, K] float32
    again, hit = cached_reference_logits(lambda: model, "m", ds, cache_root=tmp_path)
    assert hit and isinstance(again.values, np.memmap)


def test_a_model_that_drops_rows_is_a_model_error_and_leaves_no_entry(tmp_path):
    import keras

    from harness.reference import cached_reference_logits

    inputs = keras.Input((6, 6, 1))
    half = keras.Model(inputs, keras.layers.Lambda(lambda t: t[: (keras.ops.shape(t)[0] + 1) // 2, 0, 0, :])(inputs))
    with pytest.raises(ModelError, match="returned shape"):
        cached_reference_logits(lambda: half, "half", _dataset(), cache_root=tmp_path)
    assert not list(tmp_path.glob("*.npy"))
