"""convert / convert_all: what each variant promises, failures recorded per variant, SavedModel."""

import json

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.quantize.convert import convert, convert_all
from harness.quantize.inspect import inspect_model, list_ops
from harness.quantize.options import QuantizeOptions

WEIGHT_OPS = ("CONV_2D", "FULLY_CONNECTED")


def _io(artifact):
    return [t.dtype for t in artifact.inputs], [t.dtype for t in artifact.outputs]


def _tensor_dtypes(artifact):
    return dict(inspect_model(artifact.path).tensor_dtypes)


def _weight_op_output_dtypes(artifact):
    return {op.output_dtypes[0] for op in list_ops(artifact.path) if op.op_name in WEIGHT_OPS}


def test_every_variant_converts_and_prepares(artifacts):
    assert list(artifacts) == ["fp32", "dynamic", "float16", "int8", "int16x8", "mixed"]
    for artifact in artifacts.values():
        assert artifact.ok, artifact.error
        assert artifact.path.is_file() and artifact.size_bytes == artifact.path.stat().st_size
        assert artifact.inputs[0].shape_signature == (-1, 8, 8, 1)
    assert artifacts["int8"].size_bytes < artifacts["fp32"].size_bytes / 2


def test_fp32_is_float_throughout(artifacts):
    fp32 = artifacts["fp32"]
    assert _io(fp32) == (["float32"], ["float32"]) and not fp32.inputs[0].quantized
    assert set(_tensor_dtypes(fp32)) == {"float32", "int32"}  # int32: the Flatten shape ops
    assert _weight_op_output_dtypes(fp32) == {"float32"}
    weight_ops = [op for op in list_ops(fp32.path) if op.op_name in WEIGHT_OPS]
    assert all(set(op.input_dtypes) == {"float32"} for op in weight_ops)  # float32 kernels
    assert fp32.calibration is None and fp32.recipe["optimizations"] == []


def test_dynamic_has_float_io_and_int8_weights(artifacts):
    dynamic = artifacts["dynamic"]
    assert _io(dynamic) == (["float32"], ["float32"])
    assert _tensor_dtypes(dynamic).get("int8", 0) >= 1
    hidden = [op for op in list_ops(dynamic.path) if op.op_name == "FULLY_CONNECTED"][0]
    assert hidden.input_dtypes == ("float32", "int8", "float32")  # activations stay float
    assert dynamic.calibration is None


def test_float16_has_float_io_and_float16_weights(artifacts):
    float16 = artifacts["float16"]
    assert _io(float16) == (["float32"], ["float32"])
    assert _tensor_dtypes(float16)["float16"] >= 4  # both kernels of both layer kinds
    dequantize = [op for op in list_ops(float16.path) if op.op_name == "DEQUANTIZE"]
    assert dequantize and all(op.input_dtypes == ("float16",) for op in dequantize)


def test_int8_has_int8_io_with_scale_and_zero_point(artifacts, calibration):
    int8 = artifacts["int8"]
    assert _io(int8) == (["int8"], ["int8"])
    for tensor in int8.inputs + int8.outputs:
        assert tensor.scale > 0 and -128 <= tensor.zero_point <= 127
    assert int8.inputs[0].scale == pytest.approx(1 / 255, rel=0.05)  # inputs span [0, 1]
    assert _weight_op_output_dtypes(int8) == {"int8"}
    assert int8.calibration == calibration.info
    assert int8.recipe["supported_ops"] == ["TFLITE_BUILTINS_INT8"]


def test_int16x8_has_int16_activations_and_float_io(artifacts):
    int16x8 = artifacts["int16x8"]
    assert _io(int16x8) == (["float32"], ["float32"])  # the converter's default I/O, recorded:
    assert int16x8.recipe["inference_input_type"] == "float32"
    assert _weight_op_output_dtypes(int16x8) == {"int16"}
    counts = {(op, dt) for op, dt, _ in inspect_model(int16x8.path).op_counts}
    assert ("QUANTIZE", "int16") in counts and ("DEQUANTIZE", "float32") in counts


def test_int16x8_with_int16_io(tiny_cnn, calibration, tmp_path):
    artifact = convert(tiny_cnn, "int16x8", calibration, QuantizeOptions(int16x8_io="int16"),
                       tmp_path)
    assert artifact.ok, artifact.error
    assert _io(artifact) == (["int16"], ["int16"])
    assert artifact.inputs[0].zero_point == 0 and artifact.inputs[0].scale > 0  # symmetric


def test_mixed_has_int8_io_and_int16_only_in_the_chosen_layers(artifacts):
    mixed = artifacts["mixed"]
    assert _io(mixed) == (["int8"], ["int8"])
    assert mixed.outputs[0].shape_signature == (-1, 10)  # restored after ai-edge-quantizer
    chosen = {layer["scope"] for layer in mixed.recipe["layers_16bit"]}
    assert len(chosen) == 2  # default: the last two weight ops (both Dense layers)
    for op in list_ops(mixed.path):
        if op.op_name in WEIGHT_OPS:
            expected = "int16" if op.scope in chosen else "int8"
            assert op.output_dtypes[0] == expected, op
    assert {o["scope"] for o in mixed.recipe["int16_activation_ops"]} == chosen


def test_sidecar_records_the_recipe_and_calibration(artifacts):
    mixed = artifacts["mixed"]
    sidecar = json.loads(mixed.path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == mixed.sha256 and sidecar["recipe"] == dict(mixed.recipe)
    assert sidecar["calibration"] == mixed.calibration.to_json()
    assert set(sidecar["versions"]) == {"tensorflow", "ai-edge-quantizer"}
    assert json.loads(json.dumps(mixed.to_json()))["recipe"]["selection"] == {"mode": "last_n",
                                                                             "n": 2}


def test_calibrated_variant_without_calibration_is_a_config_error(tiny_cnn, tmp_path):
    with pytest.raises(ConfigError, match="'int8' needs a calibration set"):
        convert_all(tiny_cnn, "fp32,int8", None, QuantizeOptions(), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # checked before anything was converted
    assert convert(tiny_cnn, "dynamic", None, QuantizeOptions(), tmp_path).ok


@pytest.fixture(scope="module")
def dead_relu6_model():
    """A conv whose ReLU6 output is ~1e-8 everywhere: its 16-bit output scale is so small that
    quantizing the 6.0 clamp overflows int32, so the 16x8 kernel refuses to prepare (the same
    failure the notes saw on a random-weight MobileNetV2)."""
    import keras

    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu6", name="dead",
                            kernel_initializer=keras.initializers.Constant(1e-9)),
        keras.layers.Flatten(), keras.layers.Dense(10, name="logits")])


def test_a_variant_that_fails_to_prepare_is_recorded_and_the_others_go_on(
        dead_relu6_model, calibration, tmp_path):
    built = convert_all(dead_relu6_model, "fp32,int16x8,int8", calibration,
                        QuantizeOptions(check_batch_size=8), tmp_path, progress=False)
    by_name = {a.variant: a for a in built}
    assert [a.variant for a in built] == ["fp32", "int16x8", "int8"]
    failed = by_name["int16x8"]
    assert not failed.ok
    assert "'int16x8' failed to prepare" in failed.error
    assert "no_integer_overflow_from_quantization" in failed.error and "CONV_2D" in failed.error
    assert failed.path.is_file() and failed.sha256  # it converted; the runtime refused it
    assert by_name["fp32"].ok and by_name["int8"].ok, (by_name["fp32"].error, by_name["int8"].error)


def test_a_variant_that_fails_to_convert_is_recorded_and_the_others_go_on(calibration, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10), keras.layers.Lambda(keras.ops.sin)])
    built = convert_all(model, "int16x8,fp32", calibration, QuantizeOptions(), tmp_path,
                        progress=False)
    failed, fp32 = built
    assert failed.error.startswith("variant 'int16x8' failed to convert: ")
    assert "not yet supported for op: 'SIN'" in failed.error
    assert failed.path is None and failed.sha256 is None and failed.inputs == ()
    assert fp32.ok and fp32.path.is_file()


def test_saved_model_folder_converts_like_the_keras_model(tiny_cnn, calibration, digits,
                                                          tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    folder = tmp_path / "saved"
    tiny_cnn.export(str(folder), verbose=False)
    built = convert_all(folder, "fp32,int8,mixed", calibration, QuantizeOptions(),
                        tmp_path / "cache", progress=False)
    assert [a.ok for a in built] == [True, True, True], [a.error for a in built]
    assert _io(built[1]) == (["int8"], ["int8"]) and _io(built[2]) == (["int8"], ["int8"])
    x = digits.preprocess.apply(digits.x[:4])
    interpreter = Interpreter(model_path=str(built[0].path))
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    (logits,) = runner(**{interpreter.get_signature_list()["serving_default"]["inputs"][0]:
                          x[:1]}).values()
    np.testing.assert_allclose(logits, tiny_cnn.predict(x[:1], verbose=0), rtol=1e-4, atol=1e-5)


def _run(artifact, x_float):
    """Run a variant on a batch with the host runtime, quantizing/dequantizing by its I/O."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact.path))
    inp, out = artifact.inputs[0], artifact.outputs[0]
    interpreter.resize_tensor_input(inp.index, [len(x_float), *inp.shape_signature[1:]])
    interpreter.allocate_tensors()
    x = x_float
    if inp.quantized:
        info = np.iinfo(inp.dtype)
        x = np.clip(np.round(x / inp.scale) + inp.zero_point, info.min, info.max)
    interpreter.set_tensor(inp.index, x.astype(inp.dtype))
    interpreter.invoke()
    y = interpreter.get_tensor(out.index).astype(np.float32)
    return (y - out.zero_point) * out.scale if out.quantized else y


def test_every_variant_runs_a_batch_and_agrees_with_keras(artifacts, tiny_cnn, digits):
    test = digits.subset("test")
    x = test.preprocess.apply(test.x[:48])
    expected = tiny_cnn.predict(x, verbose=0)
    for name, artifact in artifacts.items():
        logits = _run(artifact, x)
        assert logits.shape == (48, 10), name
        agreement = np.mean(logits.argmax(1) == expected.argmax(1))
        assert agreement >= 0.9, (name, agreement)
        if name in ("fp32", "float16"):
            np.testing.assert_allclose(logits, expected, rtol=1e-2, atol=1e-3)
