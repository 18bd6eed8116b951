"""Differences in output quantization steps between two runs of one variant."""

import math

import numpy as np
import pytest

from harness.metrics.steps import pair_diff, step_diff

SCALE = 0.2223471999168396  # the demo int8 model's output scale


def _dequant(q, zero_point=17):
    return ((np.asarray(q, np.int32) - zero_point) * np.float32(SCALE)).astype(np.float32)


def test_one_step_apart_on_dequantized_float32_logits():
    q = np.array([[-128, 5, 127], [3, 4, 5]])
    other = q + np.array([[0, 1, 0], [0, 0, -1]])
    assert step_diff(_dequant(q), _dequant(other), SCALE).tolist() == [[0, 1, 0], [0, 0, 1]]


def test_pair_diff_counts_logits_flips_and_the_largest_step():
    a = _dequant([[10, 0, 0], [0, 10, 0]])
    b = _dequant([[10, 0, 3], [0, 10, 12]])  # sample 2 flips; two of six logits differ; max 12 steps
    d = pair_diff(a, b, SCALE)
    assert (d["n"], d["flip_rate"], d["frac_logits_diff"], d["max_step_diff"]) == (2, 0.5, 2 / 6, 12.0)
    assert d["max_abs_dlogit"] == pytest.approx(12 * SCALE, rel=1e-6)


def test_float_outputs_have_no_steps():
    a = np.zeros((2, 3), np.float32)
    d = pair_diff(a, a + np.float32(1e-6), None)
    assert math.isnan(d["max_step_diff"]) and d["frac_logits_diff"] == 1.0 and d["flip_rate"] == 0.0


def test_shapes_and_scales_are_checked():
    with pytest.raises(ValueError, match="cannot be compared"):
        pair_diff(np.zeros((2, 3)), np.zeros((3, 3)), SCALE)
    with pytest.raises(ValueError, match="positive"):
        step_diff(np.zeros(1), np.zeros(1), 0.0)
    assert math.isnan(pair_diff(np.zeros((0, 3)), np.zeros((0, 3)), SCALE)["flip_rate"])
