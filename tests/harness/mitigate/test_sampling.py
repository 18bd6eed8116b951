"""Group-balanced sampler and group weights (harness/mitigate/sampling.py), checked by counting."""

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.mitigate.sampling import balanced_indices, group_shares, group_weights, sample_weights

GROUPS = np.array(["major"] * 88 + ["minor"] * 12)  # 88 % / 12 %, like the demo's training split


def test_balanced_epoch_gives_every_group_the_same_share():
    index = balanced_indices(GROUPS, 100, np.random.default_rng(0))
    assert index.shape == (100,) and index.dtype == np.int64
    names, counts = np.unique(GROUPS[index], return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist())) == {"major": 50, "minor": 50}
    # the 12 minority rows are oversampled (with replacement), the majority subsampled without
    minor = index[GROUPS[index] == "minor"]
    major = index[GROUPS[index] == "major"]
    assert len(set(minor.tolist())) <= 12 and len(set(major.tolist())) == 50


def test_three_groups_share_the_remainder_and_the_order_is_shuffled():
    groups = np.array(["a"] * 5 + ["b"] * 30 + ["c"] * 65)
    index = balanced_indices(groups, 100, np.random.default_rng(1))
    counts = {g: int((groups[index] == g).sum()) for g in "abc"}
    assert counts == {"a": 34, "b": 33, "c": 33}  # 100 // 3 = 33, the one left over to "a"
    assert not np.all(np.diff(index) >= 0)  # shuffled, not grouped in blocks
    assert group_shares(groups[index]) == {"a": 0.34, "b": 0.33, "c": 0.33}


def test_same_seed_same_epoch_other_seed_other_epoch():
    first = balanced_indices(GROUPS, 100, np.random.default_rng(7))
    again = balanced_indices(GROUPS, 100, np.random.default_rng(7))
    other = balanced_indices(GROUPS, 100, np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_an_epoch_too_small_for_the_groups_is_refused():
    with pytest.raises(ConfigError, match="cannot cover the 2 groups"):
        balanced_indices(GROUPS, 1, np.random.default_rng(0))


def test_group_weights_are_inverse_frequency_and_average_to_one():
    weights = group_weights(GROUPS)
    # N / (G * n_g): 100 / (2 * 88) and 100 / (2 * 12)
    assert weights == pytest.approx({"major": 100 / 176, "minor": 100 / 24})
    rows = sample_weights(GROUPS)
    assert rows.dtype == np.float32 and rows.shape == (100,)
    assert rows.mean() == pytest.approx(1.0)
    # every group carries the same total weight, N / G
    assert rows[GROUPS == "major"].sum() == pytest.approx(50) and rows[GROUPS == "minor"].sum() == pytest.approx(50)


def test_sample_weights_refuse_a_group_without_weight():
    with pytest.raises(ConfigError, match="minor"):
        sample_weights(GROUPS, {"major": 1.0})
