"""Keras 3 config -> tf_keras config translation (harness/mitigate/legacy_config.py).

The real rebuild with tf_keras happens in the QAT process (test_qat.py); here the translated
dict is checked against what Keras 2 expects.
"""

import json

from harness.mitigate.legacy_config import to_tf_keras_config


def test_functional_config_gets_keras2_inbound_nodes_input_shape_and_dtype(tiny_keras3):
    import keras

    inputs = keras.Input((4,), name="x")
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    out = keras.layers.Add(name="sum")([a, b])
    config = to_tf_keras_config(json.loads(keras.Model(inputs, out, name="fork").to_json()))
    layers = {layer["name"]: layer for layer in config["config"]["layers"]}
    assert config["class_name"] == "Functional"
    assert layers["x"]["config"]["batch_input_shape"] == [None, 4]
    assert "batch_shape" not in layers["x"]["config"] and "optional" not in layers["x"]["config"]
    assert layers["a"]["inbound_nodes"] == [[["x", 0, 0, {}]]]
    assert layers["sum"]["inbound_nodes"] == [[["a", 0, 0, {}], ["b", 0, 0, {}]]]
    assert layers["a"]["config"]["dtype"] == "float32"
    init = layers["a"]["config"]["kernel_initializer"]
    assert set(init) == {"class_name", "config"} and "module" not in json.dumps(config)


def test_sequential_config_keeps_its_layers_in_order(tiny_keras3):
    config = to_tf_keras_config(json.loads(tiny_keras3.to_json()))
    names = [layer["config"]["name"] for layer in config["config"]["layers"]]
    assert config["class_name"] == "Sequential" and names == ["pixels", "conv", "flat", "out"]
