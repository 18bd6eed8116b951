"""The before/after table on a run with several group attributes: a row per attribute's group and
cell, a worst group per job and attribute, groups named with their attribute."""

from __future__ import annotations

import pytest

from harness import rundir
from harness.mitigate.table import before_after, format_before_after, to_json
from support.attribute_runs import make_attribute_run

KEYS = ["variant", "target", "delegate", "scope", "attribute", "group"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_attribute_run(tmp_path_factory.mktemp("mitigate-attributes") / "run")


def test_one_row_per_attribute_group_and_cell_matching_metrics_csv(run_dir):
    table = before_after(run_dir, n_resamples=200)
    metrics = rundir.read_run(run_dir).metrics
    merged = table.groups.merge(metrics, on=KEYS, suffixes=("", "_csv"))
    assert len(merged) == len(table.groups) == len(metrics) == 3 * (1 + 2 + 2 + 4)
    assert (merged["acc_drop"] - merged["acc_drop_csv"]).abs().max() < 1e-12
    int8 = table.groups[table.groups["variant"] == "int8"]
    assert list(zip(int8["attribute"], int8["group"])) == [
        ("", ""), ("race", "A"), ("race", "B"), ("sex", "F"), ("sex", "M"),
        ("sex\u00d7race", "F\u00d7A"), ("sex\u00d7race", "F\u00d7B"), ("sex\u00d7race", "M\u00d7A"),
        ("sex\u00d7race", "M\u00d7B")]


def test_worst_group_per_job_and_attribute(run_dir):
    table = before_after(run_dir, n_resamples=200)
    worst = table.worst[table.worst["variant"] == "int8"].set_index("attribute")
    assert sorted(worst.index) == ["race", "sex", "sex\u00d7race"]
    assert worst.loc["sex", "worst_group"] == "F" and worst.loc["race", "worst_group"] == "B"
    assert worst.loc["sex\u00d7race", "worst_group"] == "F\u00d7B"
    text = format_before_after(table)
    assert "worst sex=F " in text and "worst race=B " in text and "worst sex\u00d7race=F\u00d7B " in text
    assert "sex\u00d7race=M\u00d7B" in text
    assert {r["attribute"] for r in to_json(table)["worst"]} == {"race", "sex", "sex\u00d7race"}
