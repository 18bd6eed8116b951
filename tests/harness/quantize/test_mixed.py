"""The mixed variant's layer choice: a regex over op scopes, or the last N weight ops."""

import pytest

from harness.errors import ConversionError
from harness.quantize.convert import convert
from harness.quantize.inspect import list_ops
from harness.quantize.mixed import choose_layers
from harness.quantize.options import QuantizeOptions


@pytest.fixture(scope="module")
def float_ops(artifacts):
    return list_ops(artifacts["fp32"].path)


def _weight_ops(ops):
    return [op for op in ops if op.op_name in ("CONV_2D", "FULLY_CONNECTED")]


def test_float_model_ops_are_in_execution_order(float_ops):
    assert [op.op_name for op in _weight_ops(float_ops)] == ["CONV_2D", "CONV_2D",
                                                            "FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert [op.index for op in float_ops] == list(range(len(float_ops)))
    assert all(op.scope.endswith(";") for op in float_ops)


@pytest.mark.parametrize("last_n, expected", [(1, [3]), (2, [2, 3]), (3, [1, 2, 3]),
                                              (10, [0, 1, 2, 3])])
def test_last_n_takes_the_last_weight_ops(float_ops, last_n, expected):
    weights = _weight_ops(float_ops)
    chosen = choose_layers(float_ops, QuantizeOptions(mixed_last_n=last_n))
    assert list(chosen) == [weights[i] for i in expected]


def test_regex_chooses_the_matching_layers(float_ops):
    conv_a, conv_b, hidden, _ = _weight_ops(float_ops)
    assert choose_layers(float_ops, QuantizeOptions(mixed_layers_regex="conv_b")) == (conv_b,)
    both = choose_layers(float_ops, QuantizeOptions(mixed_layers_regex=r"/conv_[ab]_?\d*/"))
    assert both == (conv_a, conv_b)
    assert choose_layers(float_ops, QuantizeOptions(mixed_layers_regex=r"/hidden(_\d+)?/MatMul")) == (
        hidden,)


def test_regex_matching_nothing_is_a_conversion_error(float_ops):
    with pytest.raises(ConversionError, match="regex 'no_such_layer' matched no quantizable op"):
        choose_layers(float_ops, QuantizeOptions(mixed_layers_regex="no_such_layer"))


def test_mixed_by_regex_raises_only_that_conv(tiny_cnn, calibration, float_ops, tmp_path):
    options = QuantizeOptions(mixed_layers_regex="conv_b")
    artifact = convert(tiny_cnn, "mixed", calibration, options, tmp_path)
    assert artifact.ok, artifact.error
    assert [t.dtype for t in artifact.inputs + artifact.outputs] == ["int8", "int8"]
    conv_b = _weight_ops(float_ops)[1]
    assert artifact.recipe["selection"] == {"mode": "regex", "regex": "conv_b"}
    assert artifact.recipe["layers_16bit"] == [
        {"op": "CONV_2D", "scope": conv_b.scope, "float_model_index": conv_b.index}]
    dtypes = {op.scope: op.output_dtypes[0] for op in _weight_ops(list_ops(artifact.path))}
    assert dtypes.pop(conv_b.scope) == "int16"
    assert set(dtypes.values()) == {"int8"} and len(dtypes) == 3


def test_mixed_regex_matching_nothing_is_recorded_not_raised(tiny_cnn, calibration, tmp_path):
    artifact = convert(tiny_cnn, "mixed", calibration,
                       QuantizeOptions(mixed_layers_regex="no_such_layer"), tmp_path)
    assert not artifact.ok and artifact.path is None
    assert artifact.error.startswith("variant 'mixed' failed to convert: regex 'no_such_layer'")
