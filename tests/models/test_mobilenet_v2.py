"""Tests for models/mobilenet_v2.py: builds at the dataset's resolution; a short real training run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models import mobilenet_v2


def test_build_takes_samples_as_they_are():
    import keras

    model = mobilenet_v2.build((8, 8, 1), 10, seed=0)
    assert tuple(model.input.shape) == (None, 8, 8, 1)
    assert tuple(model.output.shape) == (None, 10)
    assert model.get_layer("resize").output.shape[1:3] == (32, 32)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # flat graph
    assert model.layers[-1].get_config()["activation"] == "linear"
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(layer.momentum == mobilenet_v2.BN_MOMENTUM for layer in bn)


@pytest.mark.slow
def test_one_epoch_on_few_samples(digits, tmp_cache):
    from models.train import train_or_load

    small = digits.take(np.concatenate([np.flatnonzero(digits.split == "train")[:128],
                                        np.flatnonzero(digits.split == "test")[:64]]))
    recipe = dataclasses.replace(mobilenet_v2.RECIPE, epochs=1)
    trained = train_or_load("mobilenet_v2", small, recipe=recipe, progress=False)
    assert not trained.from_cache and len(trained.history["loss"]) == 1
    assert trained.path.parent == tmp_cache / "models" and trained.path.is_file()
    test = small.subset("test")
    logits = trained.model.predict(test.preprocess.apply(test.x), verbose=0)
    assert logits.shape == (64, 10) and np.isfinite(logits).all()
