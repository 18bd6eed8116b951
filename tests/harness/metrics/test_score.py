"""harness/metrics/score.py: a job scored chunk by chunk, against the whole-set computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from harness.errors import DatasetError
from harness.metrics.attributes import Attributes, expand
from harness.metrics.compare import per_sample
from harness.metrics.groups import add_sums, group_metrics, group_sums, metrics_from_sums
from harness.metrics.score import score_job
from harness.records import Logits
from support.run_kit import dataset, device_run, logits

JOB = ("int8", "local", "xnnpack")


def _job(n: int = 500, attributes=None):
    test = dataset(n)
    if attributes:  # two attributes and their cells: sex x age
        rng = np.random.default_rng(5)
        cells = np.char.add(np.char.add(np.array(["F", "M"])[rng.integers(0, 2, n)], "\u00d7"),
                            np.array(["young", "old"])[rng.integers(0, 2, n)])
        test = dataclasses.replace(test, group=cells, attributes=("sex", "age"), intersections=True)
    z_ref = logits(test, 1)
    z = z_ref + np.random.default_rng(2).normal(scale=0.8, size=z_ref.shape).astype(np.float32)
    return test, Logits(ids=test.ids, values=z_ref), device_run(JOB, z)


@pytest.mark.parametrize("attributes", [False, True])
def test_one_chunk_is_exactly_the_whole_set_computation(attributes):
    test, ref, run = _job(attributes=attributes)
    whole = group_metrics(expand(per_sample(ref, run, test), Attributes(test.attributes, test.intersections)))
    score = score_job(run, ref, test)
    pd.testing.assert_frame_equal(score.metrics, whole, check_exact=True)
    np.testing.assert_array_equal(score.preds, run.logits.argmax(axis=1))
    assert score.ids is test.ids and score.groups is test.group  # the test set's arrays, not copies


@pytest.mark.parametrize("attributes", [False, True])
def test_chunks_add_up_to_the_whole_set(attributes):
    test, ref, run = _job(attributes=attributes)
    whole, chunked = score_job(run, ref, test), score_job(run, ref, test, rows=37)
    numbers = whole.metrics.select_dtypes("number").columns
    pd.testing.assert_frame_equal(chunked.metrics.drop(columns=numbers), whole.metrics.drop(columns=numbers))
    np.testing.assert_array_equal(chunked.metrics["n"], whole.metrics["n"])
    np.testing.assert_allclose(chunked.metrics[numbers].to_numpy(float), whole.metrics[numbers].to_numpy(float),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(chunked.preds, whole.preds)
    assert chunked.summary.worst_group == whole.summary.worst_group


def test_a_reference_in_another_order_is_aligned_before_chunking():
    test, ref, run = _job()
    order = np.random.default_rng(3).permutation(len(test))
    shuffled = Logits(ids=test.ids[order], values=ref.values[order])
    pd.testing.assert_frame_equal(score_job(run, shuffled, test, rows=64).metrics,
                                  score_job(run, ref, test, rows=64).metrics, check_exact=True)


def test_logits_with_a_row_too_many_are_refused_whole():
    test, ref, run = _job()
    longer = dataclasses.replace(run, logits=np.vstack([run.logits, run.logits[:1]]))
    with pytest.raises(DatasetError, match="returned logits of shape"):
        score_job(longer, ref, test, rows=64)


def test_means_skip_missing_values_as_pandas_mean_does():
    test, ref, run = _job(n=40)
    frame = per_sample(ref, run, test)
    frame.loc[frame.index[:5], "loss"] = np.nan
    frame.loc[frame["group"] == "east", "kl"] = np.nan  # a group with no value at all: NaN
    halves = [group_sums(frame.iloc[:17]), group_sums(frame.iloc[17:])]
    metrics = metrics_from_sums(add_sums(halves)).set_index(["scope", "group"])
    expected = frame.groupby("group")[["loss", "kl"]].mean()
    for g in expected.index:
        np.testing.assert_allclose(metrics.loc[("group", g), ["loss", "kl"]].to_numpy(float),
                                   expected.loc[g].to_numpy(float), rtol=1e-15)
    assert np.isnan(metrics.loc[("group", "east"), "kl"])


def test_a_float64_reference_is_scored_on_its_float32_values():
    # the run directory stores float32 reference logits: scores computed on more bits than that
    # could not be reproduced from its files (the reference in test order was scored as it came)
    test, ref, run = _job()
    wide = ref.values.astype(np.float64) + np.random.default_rng(4).normal(scale=1e-6, size=ref.values.shape)
    stored = wide.astype(np.float32)
    for rows in (64, 10_000):
        pd.testing.assert_frame_equal(score_job(run, Logits(ids=test.ids, values=wide), test, rows=rows).metrics,
                                      score_job(run, Logits(ids=test.ids, values=stored), test, rows=rows).metrics,
                                      check_exact=True)


@pytest.mark.parametrize("attributes", [False, True])
def test_means_of_counts_are_exactly_those_of_one_pass_whatever_the_chunks(attributes):
    test, ref, run = _job(attributes=attributes)
    whole, chunked = score_job(run, ref, test).metrics, score_job(run, ref, test, rows=37).metrics
    counts = ["n", "acc_ref", "acc", "acc_drop", "flip_rate", "flip_right_to_wrong", "flip_wrong_to_right", "psi"]
    pd.testing.assert_frame_equal(chunked[counts], whole[counts], check_exact=True)
