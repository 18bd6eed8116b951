"""QuantizeOptions.fixed_batch: variants converted with the batch dimension fixed at N.

Measured here (tiny CNN, sklearn digits, the whole test split): fp32, int8 and mixed converted with
fixed_batch = 1 give bit-identical outputs to their dynamic-batch twins run at batch 1, and int8
with fixed_batch = 4 equals the dynamic int8 run at batch 4 -- the fixed batch changes the graph
(no SHAPE/STRIDED_SLICE/PACK for the Flatten), not the numbers.
"""

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.quantize import convert as convert_module
from harness.quantize.convert import convert, convert_all
from harness.quantize.inspect import list_ops
from harness.quantize.options import QuantizeOptions

DYNAMIC_FLATTEN_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}
FIXED_VARIANTS = "fp32,int8,int16x8,mixed"


@pytest.fixture(scope="module")
def fixed1(tiny_cnn, calibration, variant_cache):
    """fp32, int8, int16x8 and mixed with fixed_batch = 1, by name (same cache as the dynamic ones)."""
    built = convert_all(tiny_cnn, FIXED_VARIANTS, calibration, QuantizeOptions(fixed_batch=1),
                        variant_cache, progress=False)
    return {a.variant: a for a in built}


def _raw_outputs(artifact, x_float, batch):
    """The output tensor's raw values for every row of ``x_float``, ``batch`` rows per invoke."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact.path))
    inp, out = artifact.inputs[0], artifact.outputs[0]
    if inp.dynamic_batch:
        interpreter.resize_tensor_input(inp.index, [batch, *inp.shape_signature[1:]])
    interpreter.allocate_tensors()
    x = x_float
    if inp.quantized:
        info = np.iinfo(inp.dtype)
        x = np.clip(np.round(x / inp.scale) + inp.zero_point, info.min, info.max)
    rows = []
    for start in range(0, len(x) - batch + 1, batch):
        interpreter.set_tensor(inp.index, x[start:start + batch].astype(inp.dtype))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out.index).copy())
    return np.concatenate(rows)


def test_fixed_batch_1_has_static_shapes_and_no_dynamic_flatten(fixed1, artifacts):
    for name, artifact in fixed1.items():
        assert artifact.ok, artifact.error
        assert artifact.inputs[0].shape_signature == (1, 8, 8, 1), name
        assert artifact.outputs[0].shape_signature == (1, 10), name
        ops = {op.op_name for op in list_ops(artifact.path)}
        assert not ops & DYNAMIC_FLATTEN_OPS and "RESHAPE" in ops, (name, ops)
        assert artifact.recipe["fixed_batch"] == 1
        # a different artifact from the dynamic one: another cache entry, other bytes
        assert artifact.sha256 != artifacts[name].sha256 and artifact.path != artifacts[name].path
    assert DYNAMIC_FLATTEN_OPS <= {op.op_name for op in list_ops(artifacts["int8"].path)}
    assert "fixed_batch" not in artifacts["int8"].recipe  # dynamic recipes (and keys) unchanged


@pytest.mark.parametrize("variant", ["fp32", "int8", "mixed"])
def test_fixed_batch_1_outputs_equal_the_dynamic_variant_at_batch_1(fixed1, artifacts, digits, variant):
    test = digits.subset("test")
    x = test.preprocess.apply(test.x)
    fixed, dynamic = fixed1[variant], artifacts[variant]
    assert (fixed.outputs[0].scale, fixed.outputs[0].zero_point) == \
        (dynamic.outputs[0].scale, dynamic.outputs[0].zero_point)
    np.testing.assert_array_equal(_raw_outputs(fixed, x, 1), _raw_outputs(dynamic, x, 1))


def test_mixed_is_built_from_the_fixed_fp32_with_ranges_from_the_dynamic_one(fixed1, artifacts):
    mixed = fixed1["mixed"]
    assert mixed.recipe["float_model_sha256"] == fixed1["fp32"].sha256
    assert mixed.recipe["ranges_from_float_model_sha256"] == artifacts["fp32"].sha256
    assert [o["op"] for o in mixed.recipe["int16_activation_ops"]] == ["FULLY_CONNECTED"] * 2
    assert "ranges_from_float_model_sha256" not in artifacts["mixed"].recipe


def test_fixed_batch_4_prepares_at_4_and_equals_dynamic_at_4(tiny_cnn, calibration, digits,
                                                              artifacts, variant_cache, monkeypatch):
    seen = []
    real = convert_module.check_prepares

    def recording(path, batch_size):
        seen.append(batch_size)
        return real(path, batch_size)

    monkeypatch.setattr(convert_module, "check_prepares", recording)
    int8 = convert(tiny_cnn, "int8", calibration, QuantizeOptions(fixed_batch=4, check_batch_size=16),
                   variant_cache)
    assert int8.ok, int8.error
    assert seen == [4]
    assert int8.inputs[0].shape_signature == (4, 8, 8, 1) and int8.recipe["fixed_batch"] == 4
    test = digits.subset("test")
    x = test.preprocess.apply(test.x)
    np.testing.assert_array_equal(_raw_outputs(int8, x, 4), _raw_outputs(artifacts["int8"], x, 4))


def test_saved_model_folder_with_fixed_batch(tiny_cnn, calibration, fixed1, digits, tmp_path):
    folder = tmp_path / "saved"
    tiny_cnn.export(str(folder), verbose=False)
    int8 = convert(folder, "int8", calibration, QuantizeOptions(fixed_batch=1), tmp_path / "cache")
    assert int8.ok, int8.error
    assert int8.inputs[0].shape_signature == (1, 8, 8, 1)
    assert not {op.op_name for op in list_ops(int8.path)} & DYNAMIC_FLATTEN_OPS
    x = digits.preprocess.apply(digits.subset("test").x[:32])
    np.testing.assert_array_equal(_raw_outputs(int8, x, 1), _raw_outputs(fixed1["int8"], x, 1))


def test_fixed_batch_option_is_checked_and_recorded():
    with pytest.raises(ConfigError, match="fixed_batch"):
        QuantizeOptions(fixed_batch=-1)
    assert QuantizeOptions(fixed_batch=1).to_json()["fixed_batch"] == 1
    assert QuantizeOptions(fixed_batch=2, check_batch_size=64).prepare_batch_size == 2
    assert QuantizeOptions(check_batch_size=64).prepare_batch_size == 64
