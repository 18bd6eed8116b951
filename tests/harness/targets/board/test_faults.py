"""The board runtime's known faults: which jobs are refused before they crash, and why."""

from pathlib import Path

import numpy as np
import pytest

from harness.errors import ArtifactError
from harness.targets.board.faults import device_refusal, per_channel_int8_dense, refusal
from harness.targets.board.spec import BoardSpec


def _int8_dense(path: Path, per_channel: bool) -> Path:
    """A Dense 4 -> 3 model, full-integer, through the real converter (per-channel weight scales
    are its default for Dense; per-tensor when asked)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), batch_size=1), keras.layers.Dense(3, name="head")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 4), i / 4, np.float32)] for i in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = not per_channel
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    return {kind: _int8_dense(folder / f"{kind}.tflite", kind == "per_channel")
            for kind in ("per_channel", "per_tensor")}


def test_per_channel_int8_dense_layers_are_found(models):
    assert len(per_channel_int8_dense(models["per_channel"])) == 1
    assert per_channel_int8_dense(models["per_tensor"]) == []


@pytest.mark.parametrize("delegate", ["builtin", "xnnpack"])
def test_armv7l_tflite_runtime_refuses_per_channel_dense_naming_the_cause(models, delegate):
    why = refusal(BoardSpec("armv7l"), models["per_channel"], delegate)
    assert "tflite-runtime==2.14.0 on armv7l crashes" in why and "per-channel" in why
    assert f"the {delegate} kernels" in why and "'reference' delegate" in why
    assert device_refusal("armv7l", models["per_channel"], delegate) == why


def test_what_runs_is_not_refused(models):
    assert refusal(BoardSpec("armv7l"), models["per_channel"], "reference") is None
    assert refusal(BoardSpec("armv7l"), models["per_tensor"], "builtin") is None
    assert refusal(BoardSpec("aarch64"), models["per_channel"], "builtin") is None  # ruy, not gemmlowp


def test_a_file_that_is_no_model_is_named(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ArtifactError, match="junk.tflite is not a readable TFLite flatbuffer"):
        refusal(BoardSpec("armv7l"), junk, "builtin")
