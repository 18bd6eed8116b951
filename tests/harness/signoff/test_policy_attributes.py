"""The sign-off policy key ``attributes``: a named attribute's groups decide PASS/FAIL; cells and
attributes the policy does not name WARN at most."""

from __future__ import annotations

import pytest

from harness import signoff as so
from harness.errors import ConfigError
from harness.metrics.stats import run_stats
from harness.rundir import read_run
from support.attribute_runs import make_attribute_run

SMALL_CELLS = {"F\u00d7A": 300, "F\u00d7B": 60, "M\u00d7A": 400, "M\u00d7B": 90}   # sex F 360, M 490; race A 700, B 150


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = make_attribute_run(tmp_path_factory.mktemp("signoff-attributes") / "run", sizes=SMALL_CELLS,
                              variants={"fp32": {}, "int8": {"F\u00d7A": (0.9, 0.4), "F\u00d7B": (0.3, 2.0),
                                                              "M\u00d7A": (0.9, 0.4), "M\u00d7B": (0.9, 0.4)}})
    return read_run(path)


@pytest.fixture(scope="module")
def stats(run):
    return run_stats(run, n_resamples=300)


def worst(stats, attribute):
    d = stats.disparity
    return d[(d["variant"] == "int8") & (d["attribute"] == attribute)].iloc[0]


def judge(run, stats, **policy):
    return so.judge(run, stats, so.parse_policy(policy, "test policy"))


def rule(verdict, name):
    return next(r for r in verdict.rules if r.rule == name)


def test_a_cell_beyond_the_limit_warns_never_fails(run, stats):
    sex, race, cell = (worst(stats, a)["worst_group_drop"] for a in ("sex", "race", "sex\u00d7race"))
    assert cell > max(sex, race)                                  # the F\u00d7B cell loses most
    limit = (cell + max(sex, race)) / 2
    r = rule(judge(run, stats, max_worst_group_drop=limit), "max_worst_group_drop")
    assert r.status == so.WARN and "not judged" in r.message
    assert rule(judge(run, stats, max_worst_group_drop=min(sex, race) / 2), "max_worst_group_drop").status == so.FAIL


def test_only_the_named_attribute_decides(run, stats):
    sex, race = worst(stats, "sex"), worst(stats, "race")
    assert sex["worst_group"] == "F" and race["worst_group"] == "B"
    low, high = sorted([sex["worst_group_drop"], race["worst_group_drop"]])
    limit = (low + high) / 2                                      # one attribute within, the other beyond
    beyond = "sex" if sex["worst_group_drop"] > limit else "race"
    within = "race" if beyond == "sex" else "sex"
    named_beyond = rule(judge(run, stats, max_worst_group_drop=limit, attributes=[beyond]), "max_worst_group_drop")
    assert named_beyond.status == so.FAIL
    named_within = rule(judge(run, stats, max_worst_group_drop=limit, attributes=[within]), "max_worst_group_drop")
    assert named_within.status == so.WARN and beyond in named_within.message
    default = rule(judge(run, stats, max_worst_group_drop=limit), "max_worst_group_drop")
    assert default.status == so.FAIL                              # without the key every attribute decides


def test_min_group_size_per_attribute(run, stats):
    assert rule(judge(run, stats, min_group_size=100), "min_group_size").status == so.WARN   # cells of 60 and 90
    assert rule(judge(run, stats, min_group_size=200), "min_group_size").status == so.FAIL   # race=B has 150
    only_sex = rule(judge(run, stats, min_group_size=200, attributes=["sex"]), "min_group_size")
    assert only_sex.status == so.WARN                             # sex F 360 and M 490 pass; race=B only warns
    assert judge(run, stats, min_group_size=10).verdict == so.PASS


def test_attributes_must_name_attributes_of_the_run(run, stats):
    with pytest.raises(ConfigError, match="'age'.*its attributes: sex, race"):
        judge(run, stats, max_worst_group_drop=0.5, attributes=["age"])
    with pytest.raises(ConfigError, match="attributes"):
        so.parse_policy({"attributes": "sex"}, "test policy")
