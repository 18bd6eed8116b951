"""``qskew signoff``: exit codes, printed verdict, the WARN line on stderr, --json alone on stdout."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.metrics.stats import run_stats
from harness.rundir import read_run, read_signoff, signoff_junit_path
from support.synthetic_runs import make_run_dir

MILD = {"fp32": {}, "int8": {"majority": (0.95, 0.3), "minority": (0.7, 0.8)}}
LENIENT = {"max_worst_group_drop": 0.5, "max_psi": 0.5, "judge_on_upper_bound": True, "max_flip_rate_ratio": 50.0,
           "min_group_size": 10, "require_devices": ["local"], "require_delegates": ["xnnpack"]}
STRICT = {"max_worst_group_drop": 0.005, "max_psi": 0.5, "min_group_size": 10}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("signoff") / "run", variants=MILD)


def write_policy(path: Path, policy: dict) -> Path:
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in policy.items()))
    return path


def test_cli_exit_codes_and_outputs(run_dir, tmp_path, capsys):
    strict = write_policy(tmp_path / "strict.toml", STRICT)
    assert main(["signoff", str(run_dir), "--policy", str(strict), "--resamples", "300"]) == 1
    out = capsys.readouterr()
    assert "FAIL  max_worst_group_drop" in out.out and "verdict: FAIL" in out.out
    saved = read_signoff(run_dir)
    assert saved["verdict"] == "FAIL" and saved["policy"]["max_worst_group_drop"] == 0.005
    assert saved["statistics"]["n_resamples"] == 300
    assert ET.parse(signoff_junit_path(run_dir)).getroot().find("testsuite") is not None

    lenient = write_policy(tmp_path / "lenient.toml", LENIENT)
    junit = tmp_path / "junit.xml"
    assert main(["signoff", str(run_dir), "--policy", str(lenient), "--junit", str(junit)]) == 0
    out = capsys.readouterr()
    assert "verdict: PASS" in out.out and "WARNING" not in out.err and junit.exists()

    d = run_stats(read_run(run_dir), n_resamples=400).disparity.sort_values("worst_group_drop").iloc[-1]
    warn = write_policy(tmp_path / "warn.toml", {"max_worst_group_drop": float(
        (d["worst_group_drop"] + d["worst_group_drop_hi"]) / 2)})
    assert main(["signoff", str(run_dir), "--policy", str(warn), "--resamples", "400"]) == 0
    assert capsys.readouterr().err.startswith("WARNING: sign-off verdict is WARN")

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("max_worst_group_drop = 0.02\nmax_wgd = 0.1\n")
    assert main(["signoff", str(run_dir), "--policy", str(unknown)]) == 2
    assert "unknown policy key 'max_wgd'" in capsys.readouterr().err


def test_json_is_the_saved_verdict_and_alone_on_stdout(run_dir, tmp_path, capfd):
    lenient = write_policy(tmp_path / "lenient.toml", LENIENT)
    assert main(["signoff", str(run_dir), "--policy", str(lenient), "--json", "--resamples", "100"]) == 0
    out, err = capfd.readouterr()  # fd level: what anything else printed must be on stderr
    printed = json.loads(out)  # exactly one document: extra text would fail to parse
    assert printed == read_signoff(run_dir) and printed["verdict"] == "PASS"
    assert [r["rule"] for r in printed["rules"]][-1] == "jobs_completed"
    assert "verdict: PASS" not in out + err  # the text table is not printed with --json


def test_json_warn_keeps_its_warning_line_on_stderr(run_dir, tmp_path, capfd):
    d = run_stats(read_run(run_dir), n_resamples=400).disparity.sort_values("worst_group_drop").iloc[-1]
    warn = write_policy(tmp_path / "warn.toml", {"max_worst_group_drop": float(
        (d["worst_group_drop"] + d["worst_group_drop_hi"]) / 2)})
    assert main(["signoff", str(run_dir), "--policy", str(warn), "--resamples", "400", "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["verdict"] == "WARN"
    assert err.startswith("WARNING: sign-off verdict is WARN")


def test_a_negative_seed_is_one_error_line_naming_the_flag(run_dir, capsys):
    """numpy refuses a negative seed with a bare ValueError deep in the bootstrap; the command says which flag."""
    assert main(["signoff", str(run_dir), "--seed", "-1"]) == 2
    assert "--seed must be >= 0, got -1" in capsys.readouterr().err
