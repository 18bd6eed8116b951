"""A variant's weights put back into the Keras model: within one quantization step, logits close to the .tflite's."""

import numpy as np
import pytest

from harness.analysis.dequant import dequantized_model, read_weights
from harness.errors import ArtifactError


def _kernel_scales(path):
    """Per-output-channel scales of every int8 weight tensor, read straight from the interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    scales = {}
    for t in interpreter.get_tensor_details():
        qp = t["quantization_parameters"]
        if np.dtype(t["dtype"]) == np.int8 and len(t["shape"]) in (2, 4) and len(qp["scales"]) == t["shape"][0]:
            scales[tuple(int(d) for d in t["shape"])] = np.asarray(qp["scales"], np.float64)
    return scales


def _tflite_logits(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    scale, zero = inp["quantization"]
    q = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8) if scale else x
    interpreter.set_tensor(inp["index"], q)
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"])
    scale, zero = out["quantization"]
    return (raw.astype(np.float64) - zero) * scale if scale else raw.astype(np.float64)


def test_int8_weights_are_within_one_quantization_step_of_the_float_weights(tiny_model, variants):
    path = variants["int8"].path
    before = [w.copy() for w in tiny_model.get_weights()]
    dq = dequantized_model(tiny_model, path)
    assert [lw.layer for lw in dq.layers] == ["conv", "hidden", "logits"]
    scales = _kernel_scales(path)
    for layer in ("conv", "hidden", "logits"):
        fp32 = np.asarray(tiny_model.get_layer(layer).kernel.numpy(), np.float64)
        mine = np.asarray(dq.model.get_layer(layer).kernel.numpy(), np.float64)
        out_channels = fp32.shape[-1]
        step = next(s for shape, s in scales.items() if shape[0] == out_channels and np.prod(shape) == fp32.size)
        assert np.all(np.abs(mine - fp32) <= step * (1 + 1e-6)), layer        # per output channel (last Keras axis)
        assert not np.array_equal(mine, fp32), layer                           # really the quantized values
        levels = np.round(mine / step)
        np.testing.assert_allclose(mine, levels * step, rtol=1e-6, atol=1e-9)  # on the int8 grid (float32)
        assert np.abs(levels).max() <= 127
    assert dq.weight_delta_norm > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_model.get_weights()))  # original untouched


def test_dequantized_model_logits_are_close_to_the_int8_tflite_logits(tiny_model, variants, test_inputs):
    x = test_inputs[0][:64]
    dq = dequantized_model(tiny_model, variants["int8"].path)
    mine = np.asarray(dq.model(x), np.float64)
    tflite = _tflite_logits(variants["int8"].path, x)
    fp32 = np.asarray(tiny_model(x), np.float64)
    spread = np.std(fp32)
    # activations are rounded in the .tflite only: close, not equal
    assert np.mean(np.abs(mine - tflite)) < 0.1 * spread
    assert np.mean(mine.argmax(1) == tflite.argmax(1)) >= 0.9
    # and the weights-only model sits closer to FP32 than the fully quantized one does
    assert np.mean(np.abs(mine - fp32)) < np.mean(np.abs(tflite - fp32))


def test_fp32_and_float16_variants_map_too(tiny_model, variants):
    fp32 = dequantized_model(tiny_model, variants["fp32"].path)
    assert fp32.weight_delta_norm < 1e-5
    f16 = dequantized_model(tiny_model, variants["float16"].path)  # kernels behind DEQUANTIZE ops
    assert {lw.dtype for lw in f16.layers} == {"float16"}
    assert 0 < f16.weight_delta_norm < 1e-2
    assert 0 < len(read_weights(variants["int16x8"].path)) == 3


def test_a_different_model_is_refused_with_the_file_named(tiny_model, variants):
    import keras

    other = keras.models.clone_model(tiny_model)
    other.set_weights([w * 1.5 + 0.01 for w in tiny_model.get_weights()])
    with pytest.raises(ArtifactError, match=r"int8\.tflite: cannot map weights onto Keras layer\(s\) conv"):
        dequantized_model(other, variants["int8"].path)


def test_batch_norm_folded_by_the_converter_is_unfolded(dataset, tmp_path):
    """Conv (no bias) + BatchNormalization: the .tflite holds W * gamma / sqrt(var + eps)."""
    import keras

    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert
    from harness.quantize.options import QuantizeOptions

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
        keras.layers.BatchNormalization(name="bn2"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, name="out"),
    ])
    rng = np.random.default_rng(0)
    for name, channels in (("bn", 4), ("bn2", 8)):
        model.get_layer(name).set_weights([rng.uniform(0.5, 2.0, channels), rng.normal(0, 0.3, channels),
                                           rng.normal(0, 0.3, channels), rng.uniform(0.2, 3.0, channels)])
    calib = make_calibration(dataset, size=16, seed=0)
    for variant in ("fp32", "int8"):
        art = convert(model, variant, calib, QuantizeOptions(calibration_size=16, check_batch_size=4), tmp_path)
        dq = dequantized_model(model, art.path)
        assert [lw.layer for lw in dq.layers] == ["conv", "dw", "out"]
        assert max(lw.max_error_steps for lw in dq.layers) <= 1.0
        for bn in ("bn", "bn2"):  # BN keeps FP32's values; only the kernels carry the variant
            for mine, ref in zip(dq.model.get_layer(bn).get_weights(), model.get_layer(bn).get_weights()):
                assert np.array_equal(mine, ref)
        if variant == "fp32":
            np.testing.assert_allclose(dq.model.get_layer("conv").kernel.numpy(),
                                       model.get_layer("conv").kernel.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rescaling", ["rescaling", "normalization"])
def test_an_input_scaling_folded_into_the_first_conv_is_unfolded(dataset, rescaling, tmp_path):
    """The converter folds ``x * 2 - 1`` (or a Normalization) into the first conv's kernel and bias:
    without unfolding it, no TFLite op is within a step of the Keras kernel (analyze failed)."""
    import keras

    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions

    keras.utils.set_random_seed(0)
    first = keras.layers.Rescaling(2.0, -1.0, name="scale") if rescaling == "rescaling" else \
        keras.layers.Normalization(mean=0.3, variance=0.04, name="scale")
    model = keras.Sequential([keras.Input((8, 8, 1)), first, keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(10, name="logits")], name="folded")
    calibration = make_calibration(dataset, size=16, seed=0)
    built = convert_all(model, ["fp32", "int8"], calibration, QuantizeOptions(calibration_size=16),
                        tmp_path, progress=False)
    x = dataset.subset("test").preprocess.apply(dataset.subset("test").x)[:32]
    for art in built:
        assert len(read_weights(art.path)) == 2   # the scaling is no op of its own: it was folded
        dq = dequantized_model(model, art.path)
        assert [lw.layer for lw in dq.layers] == ["conv", "logits"]
        assert max(lw.max_error_steps for lw in dq.layers) <= 1.0
        if art.variant == "fp32":  # int8's activations saturate; the dequantized model's stay float
            np.testing.assert_allclose(dq.model.predict(x, verbose=0), _tflite_logits(art.path, x), atol=1e-4)
