"""Tests for harness/model_source.py: a model's facts found by its file's bytes, loaded only on a miss."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness.errors import ModelError
from harness.model_source import ModelSource, cached_facts, facts_of, path_sha256


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import keras

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)), name="tiny")
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path, keras.saving.load_model(path)


def test_facts_are_computed_once_per_file_content(saved, tmp_path):
    path, model = saved
    loads = []

    def load():
        loads.append(1)
        return model

    first = cached_facts(path, load, cache_root=tmp_path)
    again = cached_facts(path, load, cache_root=tmp_path)
    assert first == again == facts_of(model) and len(loads) == 1
    assert (first.input_shape, first.num_classes) == ((4, 4, 1), 3)
    copy = tmp_path / "copy.keras"
    copy.write_bytes(path.read_bytes())
    assert cached_facts(copy, load, cache_root=tmp_path) == first and len(loads) == 1  # same bytes, other name


def test_source_loads_the_model_only_when_read(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path))
    path, model = saved
    loads = []
    source = ModelSource(None, {"source": "file"}, load=lambda: loads.append(1) or model, file=path)
    cached_facts(path, lambda: model)  # as an earlier run left it
    assert source.facts.num_classes == 3 and loads == []
    assert source.model is model and source.model is model and loads == [1]


def test_a_folder_hashes_its_files_and_their_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    before = path_sha256(tmp_path)
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert path_sha256(tmp_path) != before


def _converted(model, path, quantize=False):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:  # int8 weights and activations, float I/O: QUANTIZE/DEQUANTIZE at the ends
        x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    path.write_bytes(converter.convert())
    return path


def test_tflite_facts_form_outputs_and_a_single_unit(tmp_path):
    import keras

    from harness.model_source import tflite_facts

    softmax = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    logits = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    facts = tflite_facts(_converted(softmax, tmp_path / "soft.tflite"))
    assert (facts.form, facts.outputs, facts.num_classes, facts.input_shape) == ("tflite-float", "probabilities", 3, (6,))
    assert facts.has_fp32_reference and facts.fingerprint == facts.sha256
    quantized = tflite_facts(_converted(softmax, tmp_path / "soft-int8.tflite", quantize=True))
    assert (quantized.form, quantized.outputs, quantized.has_fp32_reference) == ("tflite-quantized", "probabilities", False)
    assert tflite_facts(_converted(logits, tmp_path / "logits.tflite")).outputs == "logits"
    single = _converted(keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)]), tmp_path / "reg.tflite")
    with pytest.raises(ModelError, match="has 1 output unit: a regression or single-logit binary model"):
        ModelSource.from_tflite(single).facts  # noqa: B018
