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


def _metrics_rows(jobs, groups):
    """The metrics table's key columns for ``jobs``: an overall row and one row per group."""
    import pandas as pd

    rows = [{"variant": v, "target": t, "delegate": d, "scope": scope, "attribute": attr, "group": g}
            for v, t, d in jobs
            for scope, attr, g in [("overall", "", "")] + [("group", "group", g) for g in groups]]
    return pd.DataFrame(rows)


def _predictions(jobs_logits, cells):
    import pandas as pd

    return pd.concat([pd.DataFrame({"id": [f"s{i}" for i in range(len(z))], "group": cells,
                                    "variant": job[0], "target": job[1], "delegate": job[2],
                                    "logits": list(np.asarray(z, np.float32))})
                      for job, z in jobs_logits.items()], ignore_index=True)


def test_metrics_step_columns_by_hand_per_group_against_the_reference_kernel_job():
    from harness.metrics.steps import fill_step_columns

    base = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]   # quantized values, 4 samples x 3 classes
    xnn = [[0, 0, 0], [0, 2, 0], [0, 0, 0], [1, 0, 0]]    # sample 1 (group a) 2 steps; sample 3 (b) 1
    phone = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, -1]] # no reference job of its own: local's stands in
    jobs = {("int8", "local", "reference"): base, ("int8", "local", "xnnpack"): xnn,
            ("int8", "phone", "gpu"): phone}
    cells = ["a", "a", "b", "b"]
    preds = _predictions({j: _dequant(q) for j, q in jobs.items()}, cells)
    out = fill_step_columns(_metrics_rows(list(jobs), ["a", "b"]), preds, {"int8": SCALE}, None)
    got = {(r.target, r.delegate, r.group): (r.max_step_diff, r.frac_logits_diff) for r in out.itertuples()}
    assert got[("local", "xnnpack", "")] == (2.0, 2 / 12)
    assert got[("local", "xnnpack", "a")] == (2.0, 1 / 6)
    assert got[("local", "xnnpack", "b")] == (1.0, 1 / 6)
    assert got[("phone", "gpu", "a")] == (0.0, 0.0)
    assert got[("phone", "gpu", "b")] == (1.0, 1 / 6)
    assert got[("local", "reference", "")] == (0.0, 0.0)  # its own baseline


def test_metrics_step_columns_are_nan_without_a_reference_kernel_job_and_for_float_outputs():
    from harness.metrics.steps import fill_step_columns

    jobs = {("fp32", "local", "reference"): np.zeros((2, 3)), ("fp32", "local", "xnnpack"): np.full((2, 3), 1e-6),
            ("int8", "local", "xnnpack"): np.zeros((2, 3))}
    preds = _predictions(jobs, ["a", "a"])
    out = fill_step_columns(_metrics_rows(list(jobs), ["a"]), preds, {"fp32": None, "int8": SCALE}, None)
    fp32 = out[(out.variant == "fp32") & (out.delegate == "xnnpack")]
    assert fp32["max_step_diff"].isna().all() and (fp32["frac_logits_diff"] == 1.0).all()
    assert out.loc[out.variant == "int8", ["max_step_diff", "frac_logits_diff"]].isna().all().all()
