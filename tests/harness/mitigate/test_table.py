"""The before/after table (harness/mitigate/table.py) of the real mitigation run, and the CLI."""

import json

import pytest

from harness import cli, rundir
from harness.mitigate.table import ROLES, before_after, format_before_after

pytestmark = pytest.mark.slow  # all use the conftest's real mitigation run (~30 s once)


def test_table_matches_metrics_csv_and_brackets_each_drop(mitigation_run):
    table = before_after(mitigation_run.run_dir, n_resamples=500)
    metrics = rundir.read_run(mitigation_run.run_dir).metrics
    merged = table.groups.merge(metrics, on=["variant", "target", "delegate", "scope", "group"],
                                suffixes=("", "_csv"))
    assert len(merged) == len(table.groups) == len(metrics) == 6 * 3
    assert (merged["acc_drop"] - merged["acc_drop_csv"]).abs().max() < 1e-12
    assert (table.groups["acc_drop_lo"] <= table.groups["acc_drop"] + 1e-12).all()
    assert (table.groups["acc_drop"] <= table.groups["acc_drop_hi"] + 1e-12).all()
    # before rows come first, in the roles' order
    assert list(table.worst["variant"]) == [v for v in ROLES if v in set(table.worst["variant"])]
    text = format_before_after(table)
    assert "before: int8 (PTQ)" in text and "after: int8 (QAT)" in text and "int8-balanced-calib" in text


def test_cli_rerun_reuses_qat_and_prints_json(mitigation_run, capfd):
    out = mitigation_run.run_dir
    assert cli.main(["mitigate", "--out", str(out), "--json", "--no-progress"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert doc["run_dir"] == str(out) and doc["qat_from_cache"] is True
    assert doc["kept_float_layers"] == ["dense", "logits"]
    rows = doc["before_after"]["groups"]
    assert {(r["variant"], r["group"]) for r in rows} >= {("int8-qat", "faint"), ("int8", "faint"),
                                                          ("int8-balanced-calib", "faint")}
