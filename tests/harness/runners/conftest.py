"""Fixtures for the benchmark_model runner kind: tiny real models, test sets, a hostile name and a
two-output int8 model for output splitting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.records import GroupedDataset
from support import tiny_models as tiny

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_SAMPLES = 150  # 64 + 64 + 22 with batch 64: two full batches and a partial one
HOSTILE_NAME = "wd 'a\"b $(touch pwned) ;touch pwned2; `touch pwned3`, x:y"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "host-cache"))


@pytest.fixture(scope="session")
def hostile_name() -> str:
    return HOSTILE_NAME


@pytest.fixture(scope="session")
def test_set() -> GroupedDataset:
    return tiny.make_test_set(N_SAMPLES)


@pytest.fixture(scope="session")
def small_set():
    """A test set of ``n`` samples (a fixed-batch model runs one process per 4 samples)."""
    return tiny.make_test_set


@pytest.fixture(scope="session")
def two_output_model(tmp_path_factory) -> Path:
    """A full-integer (int8 in, two int8 outputs with different scales) Keras model."""
    path = tmp_path_factory.getbasetemp() / "two-output-int8.tflite"
    if path.is_file():
        return path
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    inp = keras.Input(tiny.IMAGE_SHAPE)
    x = keras.layers.Flatten()(keras.layers.Conv2D(3, 3, activation="relu")(inp))
    # logits listed second: the interpreter then reports them as output 0 (the tests check it)
    model = keras.Model(inp, [keras.layers.Dense(3)(x) * 7.0, keras.layers.Dense(tiny.NUM_CLASSES)(x)])
    calib = tiny.make_inputs(16, seed=5).astype(np.float32) * np.float32(tiny.PREPROCESS_SCALE)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([row[None]] for row in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


@pytest.fixture
def simulated(tmp_path, monkeypatch):
    """``simulated(**options)`` -> a started SimulatedDevice; HOME is private (its own ADB key)."""
    from harness.targets.simulate.simulator import SimulatedDevice
    from support.adb_sim import trusted_keys_file

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    devices = []

    def start(**options):
        root = tmp_path / f"phone{len(devices)}"
        root.mkdir()
        options.setdefault("trusted_keys", trusted_keys_file(tmp_path / "trusted"))
        devices.append(SimulatedDevice(root, **options).start())
        return devices[-1]

    yield start
    for device in devices:
        device.stop()
