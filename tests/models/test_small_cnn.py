"""Tests for models/small_cnn.py: shapes, logits out, seeded and stable builds."""

from __future__ import annotations

import numpy as np

from models import small_cnn


def test_build_shapes_and_logits():
    model = small_cnn.build((8, 8, 1), 10, seed=0)
    assert tuple(model.input.shape) == (None, 8, 8, 1)
    assert tuple(model.output.shape) == (None, 10)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits, no softmax
    out = model.predict(np.random.default_rng(0).random((4, 8, 8, 1), np.float32), verbose=0)
    assert not np.allclose(out.sum(axis=1), 1.0)


def test_build_is_seeded_and_names_are_stable():
    a, b, c = (small_cnn.build((8, 8, 1), 10, seed=s) for s in (3, 3, 4))
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_build_other_shapes():
    model = small_cnn.build((16, 12, 3), 4)
    assert tuple(model.output.shape) == (None, 4)
