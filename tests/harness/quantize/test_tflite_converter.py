"""harness/quantize/tflite_converter.py: a converter error is cut to its first useful lines, the
whole text kept in ``ConversionError.detail`` (the run directory gets it: tests/harness/test_evaluate.py)."""

import pytest

from harness.errors import ConversionError
from harness.quantize.options import QuantizeOptions
from harness.quantize.tflite_converter import MAX_MESSAGE_CHARS, first_useful_lines, run_converter


def test_a_real_converter_error_is_cut_to_the_lines_that_name_the_op():
    from support.custom_op import CUSTOM_OP, determinant_model

    with pytest.raises(ConversionError) as caught:
        run_converter(determinant_model(), "fp32", None, QuantizeOptions())
    err = caught.value
    assert len(err.detail) > 2000 and "loc(" in err.detail and "func.func" in err.detail  # MLIR dump
    assert len(err.message) <= MAX_MESSAGE_CHARS and "loc(" not in err.message and "%" not in err.message
    assert f"'tf.{CUSTOM_OP}' op is neither a custom op nor a flex op" in err.message
    assert f"TF Select ops: {CUSTOM_OP}" in err.message
    assert str(err).startswith("variant 'fp32' failed to convert: ")


def test_short_messages_are_kept_and_repeats_dropped():
    assert first_useful_lines("bad input shape") == "bad input shape"
    text = ("<unknown>:0: error: loc(callsite(fused[\"A\"] at x)): 'tf.A' op is odd\n"
            "<unknown>:0: note: loc(x): called from\n<unknown>:0: error: loc(y): 'tf.A' op is odd\n"
            '  %1 = "tf.A"(%arg0)\n')
    assert first_useful_lines(text) == "'tf.A' op is odd"
