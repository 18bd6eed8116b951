"""Calibration sets: training rows only, the three strategies, recorded shares and hash."""

import numpy as np
import pytest

from harness.errors import ConfigError, DatasetError
from harness.quantize.calibration import make_calibration


def _counts(digits, calib):
    index = {sid: i for i, sid in enumerate(digits.ids.tolist())}
    groups = digits.group[[index[s] for s in calib.ids.tolist()]]
    return {g: int(np.count_nonzero(groups == g)) for g in digits.groups}


def test_random_uses_training_rows_only_and_preprocesses(digits):
    calib = make_calibration(digits, size=100, strategy="random", seed=3)
    assert calib.info.size == 100 == calib.x_float.shape[0] == len(set(calib.ids.tolist()))
    rows = np.isin(digits.ids, calib.ids)
    assert set(digits.split[rows].tolist()) == {"train"}
    assert calib.x_float.dtype == np.float32
    np.testing.assert_allclose(calib.x_float, digits.x[rows] / 16.0, rtol=1e-6)
    assert calib.x_float.max() <= 1.0 and digits.x.max() == 16


def test_group_shares_are_those_of_the_chosen_samples(digits):
    calib = make_calibration(digits, size=100, strategy="random", seed=3)
    counts = _counts(digits, calib)
    assert calib.info.group_shares == {g: counts[g] / 100 for g in digits.groups}
    assert sum(calib.info.group_shares.values()) == pytest.approx(1.0)


def test_proportional_matches_training_shares_within_one_sample(digits):
    size = 101
    calib = make_calibration(digits, size=size, strategy="proportional", seed=0)
    train_counts = digits.subset("train").group_counts()
    total = sum(train_counts.values())
    counts = _counts(digits, calib)
    assert sum(counts.values()) == size
    for group, n in train_counts.items():
        assert abs(counts[group] - size * n / total) <= 1.0, (group, counts, train_counts)


def test_balanced_gives_equal_counts(digits):
    calib = make_calibration(digits, size=91, strategy="balanced", seed=0)
    counts = _counts(digits, calib)
    assert set(counts.values()) == {30} and calib.info.size == 90
    assert calib.info.group_shares == {g: pytest.approx(1 / 3) for g in digits.groups}


def test_balanced_draws_small_groups_with_replacement(digits):
    rare = np.flatnonzero((digits.group == "a") & (digits.split == "train"))[:5]
    others = np.flatnonzero((digits.group != "a") & (digits.split == "train"))
    small = digits.take(np.concatenate([rare, others]))
    calib = make_calibration(small, size=60, strategy="balanced", seed=0)
    assert _counts(small, calib) == {"a": 20, "b": 20, "c": 20}
    assert len(set(calib.ids[np.isin(calib.ids, small.ids[:5])].tolist())) <= 5


def test_sha_depends_on_the_samples_not_the_call(digits):
    first = make_calibration(digits, size=64, seed=0)
    again = make_calibration(digits, size=64, seed=0)
    other = make_calibration(digits, size=64, seed=1)
    assert first.info.sha256 == again.info.sha256 != other.info.sha256
    assert first.info.to_json()["seed"] == 0 and other.info.seed == 1


def test_size_larger_than_training_split_uses_every_training_row(digits):
    n_train = int(np.count_nonzero(digits.split == "train"))
    calib = make_calibration(digits, size=10 * n_train, strategy="proportional")
    assert calib.info.size == n_train


def test_no_training_rows_is_a_dataset_error(digits):
    with pytest.raises(DatasetError, match="no 'train' rows"):
        make_calibration(digits.subset("test"), size=16)


def test_bad_strategy_or_size(digits):
    with pytest.raises(ConfigError, match="unknown calibration strategy"):
        make_calibration(digits, strategy="stratified")
    with pytest.raises(ConfigError, match="cannot cover the 3 groups"):
        make_calibration(digits, size=2, strategy="balanced")
