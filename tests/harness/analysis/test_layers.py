"""Per-layer, per-group error of a variant's intermediate tensors against the FP32 Keras layers."""

import math

import numpy as np

from harness.analysis.layers import layer_errors


def test_int8_layers_have_finite_rmse_and_snr_for_every_group(tiny_model, variants, test_inputs):
    x, _, groups = test_inputs
    result = layer_errors(tiny_model, variants["int8"].path, x, groups, batch_size=16)
    assert [m.layer for m in result.matches] == ["conv", "flat", "hidden", "logits"]
    assert {m.dtype for m in result.matches} == {"int8"}
    rows = {(r.layer, r.group): r for r in result.rows}
    assert set(rows) == {(layer, g) for layer in ("conv", "flat", "hidden", "logits") for g in ("common", "rare")}
    for r in result.rows:
        assert math.isfinite(r.rmse) and r.rmse > 0, r
        assert math.isfinite(r.snr_db) and 10 < r.snr_db < 80, r
        assert r.n == int(np.sum(groups == r.group))


def test_the_output_layer_error_is_the_logit_error_of_the_tflite(tiny_model, variants, test_inputs):
    """Recomputed here from a plain interpreter run: matching and dequantization are right."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    x, _, groups = test_inputs
    path = variants["int8"].path
    interpreter = Interpreter(model_path=str(path),  # the kernels layer_errors uses (XNNPACK may differ by 1 LSB)
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    scale, zero = inp["quantization"]
    interpreter.set_tensor(inp["index"], np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8))
    interpreter.invoke()
    scale, zero = out["quantization"]
    q = (interpreter.get_tensor(out["index"]).astype(np.float64) - zero) * scale
    f = np.asarray(tiny_model(x), np.float64)
    rows = {r.group: r for r in layer_errors(tiny_model, path, x, groups).rows if r.layer == "logits"}
    for group, r in rows.items():
        mask = groups == group
        assert abs(r.rmse - np.sqrt(np.mean((q[mask] - f[mask]) ** 2))) < 1e-9 * r.rmse
        snr = 10 * np.log10(np.sum(f[mask] ** 2) / np.sum((q[mask] - f[mask]) ** 2))
        assert abs(r.snr_db - snr) < 1e-9


def test_fp32_is_near_exact_and_16_bit_activations_beat_8_bit(tiny_model, variants, test_inputs):
    x, _, groups = test_inputs
    snr = {}
    for name in ("fp32", "int16x8", "int8"):
        rows = layer_errors(tiny_model, variants[name].path, x, groups).rows
        snr[name] = {(r.layer, r.group): r.snr_db for r in rows}
    assert min(snr["fp32"].values()) > 90
    gains = [snr["int16x8"][key] - snr["int8"][key] for key in snr["int8"]]
    assert min(gains) > 0          # the same int8 weights, finer activations: never worse...
    assert np.mean(gains) > 3      # ...and clearly better on average (weights' rounding is shared)
