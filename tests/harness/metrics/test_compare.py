"""per_sample: every column against hand-computed values, direct formulas and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import entropy

from harness.errors import DatasetError
from harness.metrics.compare import PER_SAMPLE_COLUMNS, per_sample
from harness.records import Logits


def test_columns_and_dtypes_are_fixed(tiny):
    test, ref, run = tiny
    frame = per_sample(ref, run, test)
    assert tuple(frame.columns) == PER_SAMPLE_COLUMNS
    assert frame["id"].tolist() == ["s0", "s1", "s2", "s3"]
    assert frame["group"].tolist() == ["a", "a", "b", "b"]
    assert frame[["variant", "target", "delegate"]].drop_duplicates().values.tolist() == [["int8", "local", "xnnpack"]]
    for name in ("label", "pred_ref", "pred"):
        assert frame[name].dtype == np.int64
    for name in ("correct_ref", "correct", "flip"):
        assert frame[name].dtype == bool
    for name in ("loss_ref", "loss", "logit_var_ref", "logit_var", "margin_ref", "margin", "kl", "logit_mse"):
        assert frame[name].dtype == np.float64


def test_predictions_correctness_and_flips_by_hand(tiny):
    frame = per_sample(*_args(tiny))
    # ref  [2,1,0]->0 [0,0,0]->0 (tie: first) [1,3,0]->1 [0,1,2]->2; labels 0,1,2,2
    # var  [1,2,0]->1 [0,1,0]->1             [1,3,0]->1 [0,0,3]->2
    assert frame["pred_ref"].tolist() == [0, 0, 1, 2]
    assert frame["pred"].tolist() == [1, 1, 1, 2]
    assert frame["correct_ref"].tolist() == [True, False, False, True]
    assert frame["correct"].tolist() == [False, True, False, True]
    assert frame["flip"].tolist() == [True, True, False, False]


def test_loss_by_hand_and_against_scipy(tiny):
    test, ref, run = tiny
    frame = per_sample(ref, run, test)
    # s0: log(e^2 + e + 1) - 2 = log(1 + e^-1 + e^-2); s1: log 3
    assert frame["loss_ref"][0] == pytest.approx(0.4076059644, abs=1e-9)
    assert frame["loss_ref"][1] == pytest.approx(np.log(3.0), abs=1e-12)
    rows = np.arange(4)
    for column, z in (("loss_ref", ref.values), ("loss", run.logits)):
        z = z.astype(np.float64)
        expected = logsumexp(z, axis=1) - z[rows, test.y]
        np.testing.assert_allclose(frame[column], expected, rtol=1e-12)


def test_logit_variance_is_population_variance(tiny):
    test, ref, run = tiny
    frame = per_sample(ref, run, test)
    np.testing.assert_allclose(frame["logit_var_ref"], [2 / 3, 0.0, 14 / 9, 2 / 3], rtol=1e-12)
    np.testing.assert_allclose(frame["logit_var"], np.var(run.logits.astype(np.float64), axis=1, ddof=0), rtol=1e-12)


def test_margin_by_hand(tiny):
    frame = per_sample(*_args(tiny))
    assert frame["margin_ref"].tolist() == [1.0, 0.0, -3.0, 1.0]   # z_y - max_{k != y} z_k
    assert frame["margin"].tolist() == [-1.0, 1.0, -3.0, 3.0]


def test_kl_by_hand_and_against_scipy_entropy(tiny):
    test, ref, run = tiny
    frame = per_sample(ref, run, test)
    # s0: same logits permuted, so log p - log q = z_p - z_q = [1, -1, 0]; KL = p0 - p1
    assert frame["kl"][0] == pytest.approx((np.e ** 2 - np.e) / (np.e ** 2 + np.e + 1), abs=1e-12)
    assert frame["kl"][2] == 0.0  # identical logits
    p = softmax(ref.values.astype(np.float64), axis=1)
    q = softmax(run.logits.astype(np.float64), axis=1)
    np.testing.assert_allclose(frame["kl"], entropy(p, q, axis=1), rtol=1e-10, atol=1e-15)
    assert (frame["kl"] >= 0).all()


def test_logit_mse_by_hand(tiny):
    frame = per_sample(*_args(tiny))
    np.testing.assert_allclose(frame["logit_mse"], [2 / 3, 1 / 3, 0.0, 2 / 3], rtol=1e-12)


def test_large_logits_stay_finite_and_exact(make_dataset, make_run):
    test = make_dataset(labels=[0, 1], groups=["a", "b"])
    z_ref = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, 0.0]], dtype=np.float32)
    z_var = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]], dtype=np.float32)
    frame = per_sample(Logits(test.ids, z_ref), make_run(z_var), test)
    numbers = frame[["loss_ref", "loss", "kl", "margin_ref", "logit_var"]].to_numpy()
    assert np.isfinite(numbers).all()
    assert frame["loss_ref"].tolist() == pytest.approx([0.0, 1000.0], abs=1e-9)
    assert frame["loss"].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert frame["kl"][1] == pytest.approx(1000.0, rel=1e-9)


def test_reference_is_joined_on_ids_not_position(tiny):
    test, ref, run = tiny
    order = np.array([2, 0, 3, 1])
    shuffled = Logits(ids=ref.ids[order], values=ref.values[order])
    a = per_sample(ref, run, test)
    b = per_sample(shuffled, run, test)
    assert a.equals(b)


@pytest.mark.parametrize("ids, message", [
    (["s0", "s1", "s2", "zz"], "1 missing"),
    (["s0", "s1", "s2", "s2"], "not unique"),
])
def test_reference_ids_that_do_not_match_are_refused(tiny, ids, message):
    test, ref, run = tiny
    with pytest.raises(DatasetError, match=message):
        per_sample(Logits(ids=np.array(ids), values=ref.values), run, test)


def test_misaligned_shapes_are_refused(tiny, make_dataset, make_run):
    test, ref, run = tiny
    with pytest.raises(DatasetError, match="int8/local/xnnpack"):
        per_sample(ref, make_run(run.logits[:3]), test)
    with pytest.raises(DatasetError, match="classes"):
        per_sample(ref, run, make_dataset(test.y, test.group, num_classes=4))
    with pytest.raises(DatasetError, match="labels outside"):
        per_sample(ref, run, make_dataset([0, 1, 2, 3], test.group))


def test_a_failed_run_has_no_per_sample_rows(tiny, make_run):
    test, ref, run = tiny
    failed = make_run(run.logits)
    object.__setattr__(failed, "logits", None)
    with pytest.raises(ValueError, match="no logits"):
        per_sample(ref, failed, test)


def test_zero_samples_give_an_empty_frame_with_the_same_columns(make_dataset, make_run):
    test = make_dataset(labels=[], groups=[])
    empty = np.zeros((0, 3), np.float32)
    frame = per_sample(Logits(test.ids, empty), make_run(empty), test)
    assert tuple(frame.columns) == PER_SAMPLE_COLUMNS and len(frame) == 0


def _args(tiny):
    test, ref, run = tiny
    return ref, run, test
