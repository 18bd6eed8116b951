"""Tests for harness/modelio.py: loading .keras files and SavedModel folders, shape helpers, model hash."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness import modelio
from harness.errors import ModelError

X = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)


def _model(seed: int = 0, classes: int = 10):
    """A small named functional model (not from models/: the core never depends on it)."""
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed), name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    init = keras.initializers.GlorotUniform(seed + 1)
    out = keras.layers.Dense(classes, kernel_initializer=init, name="logits")(x)
    return keras.Model(inputs, out, name="tiny")


@pytest.fixture(scope="module")
def model():
    return _model()


def test_load_keras_file(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = modelio.load_model(path)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    assert modelio.model_input_shape(loaded) == (8, 8, 1)
    assert modelio.model_num_classes(loaded) == 10
    assert modelio.model_sha256(loaded) == modelio.model_sha256(model)


def test_load_saved_model_from_keras_export(model, tmp_path):
    path = tmp_path / "exported"
    model.export(str(path), verbose=False)
    loaded = modelio.load_model(path)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)
    assert modelio.model_input_shape(loaded) == (8, 8, 1)
    assert modelio.model_num_classes(loaded) == 10
    assert modelio.model_sha256(loaded) == modelio.model_sha256(modelio.load_model(path))


def test_load_saved_model_with_named_dict_output(tmp_path):
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.random.default_rng(1).random((64, 3), dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"scores": tf.reshape(pixels, [-1, 64]) @ self.w}

    module = Linear()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    loaded = modelio.load_model(tmp_path / "sm")
    assert modelio.model_num_classes(loaded) == 3
    np.testing.assert_allclose(loaded.predict(X, verbose=0), module.serve(tf.constant(X))["scores"].numpy(),
                               rtol=1e-6)


def test_missing_path():
    with pytest.raises(ModelError, match="no-such.keras not found"):
        modelio.load_model("/tmp/qskew-none/no-such.keras")


def test_corrupt_keras_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelError) as info:
        modelio.load_model(path)
    assert str(path) in str(info.value)


def test_folder_without_saved_model_and_unsupported_suffix(tmp_path):
    with pytest.raises(ModelError, match="not a SavedModel"):
        modelio.load_model(tmp_path)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x00")
    with pytest.raises(ModelError, match="unsupported"):
        modelio.load_model(other)


def test_model_sha256_is_stable_and_sensitive(model):
    assert modelio.model_sha256(model) == modelio.model_sha256(model)
    assert modelio.model_sha256(_model(seed=0)) == modelio.model_sha256(model)  # same names, same init
    assert modelio.model_sha256(_model(seed=7)) != modelio.model_sha256(model)
    changed = _model()
    weights = changed.get_weights()
    weights[-1] = weights[-1] + 1e-3
    changed.set_weights(weights)
    assert modelio.model_sha256(changed) != modelio.model_sha256(model)


def test_shape_helpers_reject_multi_output_and_non_logits():
    import keras

    inputs = keras.Input((4,), name="v")
    two = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)], name="two")
    with pytest.raises(ModelError, match="has 2 outputs"):
        modelio.model_num_classes(two)
    image = keras.Model(inputs, keras.layers.Reshape((2, 2))(inputs), name="image_out")
    with pytest.raises(ModelError, match=r"logits \[batch, classes\]"):
        modelio.model_num_classes(image)
    flexible = keras.Input((None, None, 3))
    assert modelio.model_input_shape(keras.Model(flexible, flexible)) == (None, None, 3)


@pytest.mark.parametrize("units", [1])
def test_a_single_unit_output_gets_an_error_saying_what_qskew_expects(units):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)], name="regressor")
    with pytest.raises(ModelError, match=r"model 'regressor' has 1 output unit: a regression or single-logit "
                                         r"binary model\. qskew measures classifiers: it expects .*classes >= 2"):
        modelio.model_num_classes(model)


def test_output_kind_and_input_rescaling_come_from_the_layers():
    import keras

    soft = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255, name="r"),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    assert modelio.model_output_kind(soft) == "probabilities" and modelio.model_output_kind(_model()) == "logits"
    assert modelio.input_rescaling(soft) == "Rescaling 'r' (x * 0.00392157 + 0)"
    assert modelio.input_rescaling(_model()) == ""
    assert modelio.values_look_like_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not modelio.values_look_like_probabilities(np.array([[2.0, -1.0], [0.5, 0.5]]))


def test_a_tflite_file_is_refused_where_the_keras_model_is_needed(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a .tflite file: this step needs the Keras model"):
        modelio.load_model(path)
