"""Sign-off, report and compare on a real demo run (issue 5's "on the demo run" checks)."""

import json
import xml.etree.ElementTree as ET

import pytest

from harness import cli, rundir
from support.chromium import CHROMIUM, PAGE_ERRORS, screenshot

# Strict: the demo's minority has 180 test samples and no phone is attached, so two rules must fail.
STRICT = """
max_worst_group_drop = 0.0
min_group_size = 200
require_devices = ["pixel7"]
"""
LENIENT = """
max_worst_group_drop = 0.05
max_psi = 0.05
min_group_size = 100
require_devices = ["local"]
require_delegates = ["xnnpack"]
"""


def _signoff(run_dir, tmp_path, text, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    junit = tmp_path / "junit.xml"
    code = cli.main(["signoff", str(run_dir), "--policy", str(policy), "--junit", str(junit)])
    captured = capsys.readouterr()
    return code, json.loads((run_dir / "signoff.json").read_text()), ET.parse(junit), captured


def test_strict_policy_fails_and_names_the_rules_that_failed(demo_run, tmp_path, capsys):
    code, verdict, junit, captured = _signoff(demo_run, tmp_path, STRICT, capsys)
    assert code == 1 and verdict["verdict"] == "FAIL"
    failed = {r["rule"] for r in verdict["rules"] if r["status"] == "FAIL"}
    assert {"min_group_size", "require_devices"} <= failed
    cases = junit.getroot().iter("testcase")
    failing = {c.get("name") for c in cases if c.find("failure") is not None}
    assert {"min_group_size", "require_devices"} <= failing
    assert "min_group_size" in captured.out


def test_lenient_policy_passes_on_the_demo(demo_run, tmp_path, capsys):
    code, verdict, junit, _ = _signoff(demo_run, tmp_path, LENIENT, capsys)
    assert verdict["verdict"] in ("PASS", "WARN") and code == 0
    names = {c.get("name") for c in junit.getroot().iter("testcase")}
    assert {"max_worst_group_drop", "max_psi", "min_group_size", "require_devices", "require_delegates"} <= names


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: cannot open the report")
def test_report_of_the_demo_opens_in_chromium(demo_run, tmp_path):
    assert cli.main(["report", str(demo_run), "--out", str(tmp_path / "report.html"), "--resamples", "200"]) == 0
    html = tmp_path / "report.html"
    text = html.read_text()
    assert "int16x8" in text and "faint" in text and 'src="http' not in text
    result, shot = screenshot(html, tmp_path)
    assert result.returncode == 0 and shot.exists()
    assert PAGE_ERRORS.search(result.stdout + result.stderr) is None


def test_compare_a_demo_run_with_itself_changes_nothing(demo_run, capfd):
    # --json writes the document to the process's real stdout (fd 1), so capture at fd level
    assert cli.main(["compare", str(demo_run), str(demo_run), "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert doc["paired"] is True
    jobs = rundir.read_run(demo_run).jobs()
    assert len(doc["rows"]) == 3 * len(jobs)  # overall + two groups per job
    for row in doc["rows"]:
        assert row["status"] == "both" and row["acc_diff"] == 0.0 and row["drop_diff"] == 0.0
