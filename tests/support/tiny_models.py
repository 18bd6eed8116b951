"""Tiny real .tflite models and inputs for runner and on-device tests (built once per session).

A Keras CNN on 8x8x1 images with 10 classes, converted with the real TFLite converter to:
fp32 (dynamic batch), int8 (full-integer, int8 in/out), int16x8 (float I/O, int16 activations; no
XNNPACK path), fp32 with a batch dimension fixed at 1 and at 4, and int8 fixed at 4 (the GPU needs
static shapes). All share one set of weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
PREPROCESS_SCALE = 1.0 / 255.0  # stored uint8 -> float in [0, 1]
CALIBRATION_SAMPLES = 16
MODEL_NAMES = ("fp32", "int8", "int16x8", "fixed1", "fixed4", "fixed4_int8")


def make_inputs(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 samples [n, 8, 8, 1] with some structure (so logits differ between samples)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n,) + IMAGE_SHAPE)
    ramp = np.linspace(0, 255, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]).reshape(IMAGE_SHAPE)
    return ((base + ramp * (np.arange(n) % 3)[:, None, None, None]) % 256).astype(np.uint8)


def make_test_set(n: int, seed: int = 3, name: str = "tiny"):
    """A GroupedDataset of ``n`` test samples from :func:`make_inputs`, groups "a"/"b" alternating."""
    from harness.records import GroupedDataset, Preprocess

    return GroupedDataset(
        name=name, ids=np.array([f"s{i}" for i in range(n)]), x=make_inputs(n, seed=seed),
        y=np.arange(n) % NUM_CLASSES, group=np.array(["a", "b"] * (n // 2) + ["a"] * (n % 2)),
        split=np.array(["test"] * n), num_classes=NUM_CLASSES,
        preprocess=Preprocess(scale=PREPROCESS_SCALE, offset=0.0))


def build_models(out_dir: Path) -> dict[str, Path]:
    """Convert the models into ``out_dir`` unless they are there already; name -> path."""
    paths = {name: out_dir / f"{name}.tflite" for name in MODEL_NAMES}
    if all(p.is_file() for p in paths.values()):
        return paths
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _cnn(keras, None)
    fixed = {b: _cnn(keras, b) for b in (1, 4)}
    for m in fixed.values():
        m.set_weights(model.get_weights())
    calib = make_inputs(CALIBRATION_SAMPLES, seed=1).astype(np.float32) * np.float32(PREPROCESS_SCALE)

    def representative():
        for row in calib:
            yield [row[None]]

    def representative4():
        for i in range(0, len(calib), 4):
            yield [calib[i:i + 4]]

    out_dir.mkdir(parents=True, exist_ok=True)
    converters = {"fp32": tf.lite.TFLiteConverter.from_keras_model(model),
                  "int8": tf.lite.TFLiteConverter.from_keras_model(model),
                  "int16x8": tf.lite.TFLiteConverter.from_keras_model(model),
                  "fixed1": tf.lite.TFLiteConverter.from_keras_model(fixed[1]),
                  "fixed4": tf.lite.TFLiteConverter.from_keras_model(fixed[4]),
                  "fixed4_int8": tf.lite.TFLiteConverter.from_keras_model(fixed[4])}
    for name in ("int8", "int16x8"):
        conv = converters[name]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
    converters["fixed4_int8"].optimizations = [tf.lite.Optimize.DEFAULT]
    converters["fixed4_int8"].representative_dataset = representative4
    for name in ("int8", "fixed4_int8"):
        converters[name].target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converters[name].inference_input_type = tf.int8
        converters[name].inference_output_type = tf.int8
    converters["int16x8"].target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    for name, conv in converters.items():
        paths[name].write_bytes(conv.convert())
    return paths


def _cnn(keras, batch_size):
    inp = keras.Input(IMAGE_SHAPE, batch_size=batch_size)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(NUM_CLASSES)(x))
