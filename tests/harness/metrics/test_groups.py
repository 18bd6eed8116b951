"""group_metrics and disparity: sums and means by group, fixed columns, signs, psi, worst group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.metrics.compare import per_sample
from harness.metrics.groups import (DISPARITY_COLUMNS, METRIC_COLUMNS, MIN_GROUP_SIZE, disparity,
                                    group_metrics)
from harness.records import Logits

MEANS = {"acc_ref": "correct_ref", "acc": "correct", "loss_ref": "loss_ref", "loss": "loss",
         "logit_var_ref": "logit_var_ref", "logit_var": "logit_var", "margin_ref": "margin_ref",
         "margin": "margin", "flip_rate": "flip", "kl": "kl", "logit_mse": "logit_mse"}


@pytest.fixture
def graded(make_dataset, make_run, one_hot_logits):
    """Three groups whose accuracy drops are known (one-hot logits, so only predictions matter).

    a (4 samples): ref right on 4, variant right on 3   -> drop 0.25
    b (4 samples): ref right on 2, variant right on 3   -> drop -0.25 (variant better)
    c (2 samples): ref right on 2, variant right on 2   -> drop 0
    overall: ref 8/10, variant 8/10                     -> drop 0
    """
    labels = [0, 1, 2, 0, 0, 1, 2, 0, 1, 2]
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    pred_ref = [0, 1, 2, 0, 0, 1, 0, 1, 1, 2]
    pred_var = [0, 1, 2, 1, 0, 1, 2, 1, 1, 2]
    test = make_dataset(labels, groups)
    frame = per_sample(Logits(test.ids, one_hot_logits(pred_ref)), make_run(one_hot_logits(pred_var)), test)
    return frame


def test_group_rows_are_the_means_of_their_samples(tiny):
    test, ref, run = tiny
    frame = per_sample(ref, run, test)
    metrics = group_metrics(frame)
    for _, row in metrics.iterrows():
        part = frame if row["scope"] == "overall" else frame[frame["group"] == row["group"]]
        assert row["n"] == len(part)
        for metric, column in MEANS.items():
            assert row[metric] == pytest.approx(part[column].astype(float).mean(), rel=1e-12), metric
        assert row["flip_right_to_wrong"] == pytest.approx((part["correct_ref"] & ~part["correct"]).mean())
        assert row["flip_wrong_to_right"] == pytest.approx((~part["correct_ref"] & part["correct"]).mean())
    groups = metrics[metrics["scope"] == "group"]
    overall = metrics[metrics["scope"] == "overall"].iloc[0]
    assert groups["n"].sum() == overall["n"] == 4
    # the n-weighted mean of the group values is the overall value, for every mean column
    for metric in MEANS:
        assert (groups[metric] * groups["n"]).sum() / groups["n"].sum() == pytest.approx(overall[metric])


def test_tiny_case_by_hand(tiny):
    metrics = group_metrics(per_sample(tiny[1], tiny[2], tiny[0]))
    a = metrics[metrics["group"] == "a"].iloc[0]
    # a: s0 right->wrong, s1 wrong->right
    assert (a["acc_ref"], a["acc"], a["flip_rate"]) == (0.5, 0.5, 1.0)
    assert (a["flip_right_to_wrong"], a["flip_wrong_to_right"]) == (0.5, 0.5)
    assert a["logit_mse"] == pytest.approx(0.5)        # (2/3 + 1/3) / 2
    assert a["margin_ref"] == pytest.approx(0.5)       # (1 + 0) / 2


def test_acc_drop_keeps_its_sign_and_psi_is_relative_to_overall(graded):
    metrics = group_metrics(graded).set_index("group")
    assert metrics.loc["a", "acc_drop"] == pytest.approx(0.25)    # variant worse: positive
    assert metrics.loc["b", "acc_drop"] == pytest.approx(-0.25)   # variant better: negative
    assert metrics.loc["c", "acc_drop"] == 0.0
    assert metrics.loc["", "acc_drop"] == 0.0
    for g in "abc":
        row = metrics.loc[g]
        assert row["psi"] == pytest.approx(row["acc_drop"] - metrics.loc["", "acc_drop"])
        assert row["acc_drop"] == pytest.approx(row["flip_right_to_wrong"] - row["flip_wrong_to_right"])
        assert row["excess_loss"] == pytest.approx(row["loss"] - row["loss_ref"])
    assert np.isnan(metrics.loc["", "psi"])


def test_psi_uses_each_jobs_own_overall_drop(graded):
    other = graded.copy()
    other["variant"] = "float16"
    other["correct"] = False  # float16 gets everything wrong: overall drop 0.8
    metrics = group_metrics(pd.concat([graded, other], ignore_index=True))
    f16 = metrics[metrics["variant"] == "float16"].set_index("group")
    assert f16.loc["", "acc_drop"] == pytest.approx(0.8)
    assert f16.loc["b", "acc_drop"] == pytest.approx(0.5)
    assert f16.loc["b", "psi"] == pytest.approx(0.5 - 0.8)
    int8 = metrics[metrics["variant"] == "int8"].set_index("group")
    assert int8.loc["a", "psi"] == pytest.approx(0.25)


def test_rows_are_ordered_job_then_overall_then_groups(graded):
    other = graded.assign(variant="float16")
    metrics = group_metrics(pd.concat([graded, other], ignore_index=True))
    assert list(zip(metrics["variant"], metrics["scope"], metrics["group"])) == [
        ("float16", "overall", ""), ("float16", "group", "a"), ("float16", "group", "b"), ("float16", "group", "c"),
        ("int8", "overall", ""), ("int8", "group", "a"), ("int8", "group", "b"), ("int8", "group", "c")]


@pytest.mark.parametrize("n_groups", [0, 1, 3])
def test_columns_and_dtypes_do_not_depend_on_the_input(graded, n_groups):
    if n_groups == 0:
        frame = graded.iloc[:0]
    elif n_groups == 1:
        frame = graded.assign(group="everyone")
    else:
        frame = graded
    metrics = group_metrics(frame)
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert {c: str(t) for c, t in metrics.dtypes.items()} == {c: str(pd.Series(dtype=t).dtype)
                                                             for c, t in METRIC_COLUMNS.items()}
    assert len(metrics) == (0 if n_groups == 0 else 1 + n_groups)
    summary = disparity(metrics)
    assert list(summary.columns) == list(DISPARITY_COLUMNS)
    assert len(summary) == (0 if n_groups == 0 else 1)


def test_small_group_flag_is_strictly_below_the_threshold(make_dataset, make_run, one_hot_logits):
    assert MIN_GROUP_SIZE == 100
    n_big, n_small = MIN_GROUP_SIZE, MIN_GROUP_SIZE - 1
    labels = np.zeros(n_big + n_small, dtype=np.int64)
    test = make_dataset(labels, ["big"] * n_big + ["small"] * n_small)
    logits = one_hot_logits(labels)
    metrics = group_metrics(per_sample(Logits(test.ids, logits), make_run(logits), test)).set_index("group")
    assert not metrics.loc["big", "small_group"]
    assert metrics.loc["small", "small_group"]
    assert not metrics.loc["", "small_group"]
    assert disparity(metrics.reset_index()).iloc[0]["small_groups"] == "small"


def test_disparity_picks_worst_and_best_groups(graded):
    row = disparity(group_metrics(graded)).iloc[0]
    assert (row["variant"], row["target"], row["delegate"], row["n"]) == ("int8", "local", "xnnpack", 10)
    assert (row["acc_ref"], row["acc"], row["overall_drop"]) == (pytest.approx(0.8), pytest.approx(0.8), 0.0)
    assert (row["worst_group"], row["worst_group_drop"]) == ("a", pytest.approx(0.25))
    assert (row["best_group"], row["best_group_drop"]) == ("b", pytest.approx(-0.25))
    assert row["drop_gap"] == pytest.approx(0.5)
    assert (row["psi_group"], row["psi"]) == ("a", pytest.approx(0.25))
    # group accuracy: reference a 1.0, b 0.5, c 1.0; variant a 0.75, b 0.75, c 1.0
    assert row["acc_gap_ref"] == pytest.approx(0.5)
    assert row["acc_gap"] == pytest.approx(0.25)
    assert row["small_groups"] == "a,b,c"


def test_disparity_breaks_ties_by_group_name(make_dataset, make_run, one_hot_logits):
    labels = [0, 0, 0, 0]
    test = make_dataset(labels, ["z", "z", "m", "m"])
    ref = Logits(test.ids, one_hot_logits([0, 0, 0, 0]))
    row = disparity(group_metrics(per_sample(ref, make_run(one_hot_logits([1, 0, 1, 0])), test))).iloc[0]
    assert (row["worst_group"], row["best_group"], row["psi_group"]) == ("m", "m", "m")
    assert row["drop_gap"] == 0.0


def test_disparity_of_a_job_without_group_rows_is_nan(graded):
    overall_only = group_metrics(graded).query("scope == 'overall'")
    row = disparity(overall_only).iloc[0]
    assert row["n"] == 10 and row["worst_group"] == "" and np.isnan(row["drop_gap"])
