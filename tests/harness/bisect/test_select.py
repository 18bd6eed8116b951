import numpy as np
import pytest

from harness.bisect.select import choose_samples, parse_job
from harness.errors import ConfigError

GROUPS = np.array(["a", "b", "a", "b", "a", "b"])
IDS = np.array([f"s{i}" for i in range(6)])


def test_a_job_splits_at_the_first_two_slashes_only():
    assert parse_job("int8/local/builtin") == ("int8", "local", "builtin")
    assert parse_job("int8/pixel/external:/vendor/lib/libx.so,k=1") == ("int8", "pixel", "external:/vendor/lib/libx.so,k=1")
    with pytest.raises(ConfigError, match="VARIANT/TARGET/DELEGATE"):
        parse_job("int8/local")


def test_flipped_samples_first_then_differing_logits_then_the_first_per_group():
    pa, pb = np.array([0, 1, 2, 3, 4, 5]), np.array([0, 1, 9, 3, 4, 9])
    differ = np.array([True, False, True, False, True, True])
    flipped = choose_samples("flipped", GROUPS, IDS, pa, pb, differ, per_group=5)
    assert (flipped.rule, flipped.ids.tolist()) == ("flipped", ["s2", "s5"])
    same = choose_samples("flipped", GROUPS, IDS, pa, pa, differ, per_group=1)
    assert (same.rule, same.ids.tolist(), same.available) == ("logits differ", ["s0", "s5"], {"a": 3, "b": 1})
    none = choose_samples("group:b", GROUPS, IDS, pa, pa, np.zeros(6, bool), per_group=2)
    assert (none.rule, none.ids.tolist()) == ("first N per group", ["s1", "s3"])
    assert choose_samples("1", GROUPS, IDS, None, None, None).ids.tolist() == ["s0", "s1"]
    assert len(choose_samples("3", GROUPS, IDS, None, None, None, per_group=1).ids) == 6  # N is not capped


def test_bad_sample_rules_name_what_is_wrong():
    with pytest.raises(ConfigError, match="no group 'c'"):
        choose_samples("group:c", GROUPS, IDS, None, None, None)
    with pytest.raises(ConfigError, match="at least 1"):
        choose_samples("0", GROUPS, IDS, None, None, None)
    with pytest.raises(ConfigError, match="flipped, group:NAME or a number"):
        choose_samples("some", GROUPS, IDS, None, None, None)
