"""Sign-off's light path: ``qskew signoff`` imports neither pandas nor pyarrow, and its verdict is
the one the full path (``read_run``, statistics from the recomputed predictions) gives."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness import signoff as so
from harness.metrics.stats import run_stats
from harness.rundir import read_run
from harness.rundir.light import read_light
from support.attribute_runs import make_attribute_run
from support.synthetic_runs import add_job_scored_against_another_reference, make_run_dir

MILD = {"fp32": {}, "int8": {"majority": (0.95, 0.3), "minority": (0.7, 0.8)}}
EVERY_RULE = {"max_worst_group_drop": 0.02, "max_psi": 0.01, "max_flip_rate_ratio": 1.5, "min_group_size": 100,
              "require_devices": ["local", "pixel7"], "require_delegates": ["xnnpack"]}
HEAVY = ("pandas", "pyarrow", "scipy", "statsmodels", "tensorflow", "keras")
AWKWARD = {'g 1, "x"': 300, "2": 80, " Fem": 120}
SCHEMA1 = Path(__file__).parents[1] / "rundir" / "data" / "schema1"


def full_verdict(run_dir: Path, policy: so.Policy, n_resamples: int, seed: int) -> so.Verdict:
    """The verdict the way signoff computed it before the light path: everything through pandas."""
    run = read_run(run_dir)
    return so.judge(run, run_stats(run, n_resamples=n_resamples, seed=seed), policy)


def assert_same(light, full, where="verdict") -> None:
    """Equal JSON: strings, statuses and counts exactly, numbers to 1e-12."""
    assert type(light) is type(full) or {type(light), type(full)} <= {int, float}, where
    if isinstance(light, dict):
        assert list(light) == list(full), where
        for key in light:
            assert_same(light[key], full[key], f"{where}.{key}")
    elif isinstance(light, list):
        assert len(light) == len(full), where
        for i, (a, b) in enumerate(zip(light, full)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(light, float) and not (math.isnan(light) and math.isnan(full)):
        assert light == pytest.approx(full, abs=1e-12, rel=0), where
    elif not isinstance(light, float):
        assert light == full, where


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("light-signoff")
    return {"one": make_run_dir(base / "one", variants=MILD, targets=("local", "pixel7"),
                                delegates=("xnnpack", "reference")),
            "attributes": make_attribute_run(base / "attributes"),
            # CSV's hard cases as group names (a comma, quotes, a leading space, a number), a failed job
            "names": make_run_dir(base / "names", sizes=AWKWARD, variants={"fp32": {}, "int8": dict.fromkeys(
                AWKWARD, (0.6, 1.0))}, targets=("local", "pixel7"), failed=[("int8", "pixel7", "xnnpack")])}


@pytest.mark.parametrize("name, policy", [
    ("one", EVERY_RULE), ("one", {**EVERY_RULE, "judge_on_upper_bound": True, "max_flip_rate_ratio": 50.0}),
    ("attributes", {**EVERY_RULE, "require_devices": ["local"]}),
    ("attributes", {**EVERY_RULE, "attributes": ["sex"], "max_worst_group_drop": 0.2}),
    ("names", EVERY_RULE),
])
def test_the_light_verdict_is_the_full_paths(runs, name, policy):
    policy = so.parse_policy(policy, "test policy")
    assert read_light(runs[name]) is not None                 # signoff takes the light path here
    light = so.signoff(runs[name], policy, n_resamples=300, seed=4)
    full = full_verdict(runs[name], policy, 300, 4)
    assert_same(light.to_json(), full.to_json())
    assert {r.status for r in light.rules} >= {so.PASS, so.FAIL}   # judged numbers, not only empty rules


def test_a_resumed_run_scored_against_another_reference_gets_the_full_paths_verdict(tmp_path):
    """Its stored metrics were scored against a recomputed reference, read_run against the stored one."""
    run_dir = make_run_dir(tmp_path / "run", variants=MILD)
    add_job_scored_against_another_reference(run_dir, ("int8", "pixel7", "xnnpack"), MILD["int8"])
    policy = so.parse_policy(EVERY_RULE, "test policy")
    assert_same(so.signoff(run_dir, policy, n_resamples=300, seed=4).to_json(),
                full_verdict(run_dir, policy, 300, 4).to_json())


def test_zero_resamples_is_refused_not_taken_for_the_default(runs):
    with pytest.raises(ValueError, match="n_resamples must be >= 1, got 0"):
        so.signoff(runs["one"], so.parse_policy(EVERY_RULE, "test policy"), n_resamples=0)


def test_a_run_it_cannot_read_light_is_judged_in_full(tmp_path):
    old = Path(shutil.copytree(SCHEMA1, tmp_path / "old"))
    assert read_light(old) is None
    policy = so.parse_policy({"max_worst_group_drop": 0.02, "min_group_size": 10}, "test policy")
    assert_same(so.signoff(old, policy, n_resamples=200).to_json(), full_verdict(old, policy, 200, 0).to_json())


def test_the_signoff_command_imports_no_pandas_pyarrow_or_scipy(runs, tmp_path):
    """The whole command in a fresh interpreter (its parser, reading, statistics, JSON and JUnit);
    nor scipy, though the run has groups with discordant pairs (no rule judges a McNemar p-value)."""
    assert any((c.counts[:, 1] != c.counts[:, 2]).any() for c in read_light(runs["attributes"]).cells)
    policy = tmp_path / "policy.toml"
    policy.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in EVERY_RULE.items()))
    code = ("import json, sys\nfrom harness.cli import main\n"
            f"code = main(['signoff', {str(runs['attributes'])!r}, '--policy', {str(policy)!r}])\n"
            f"print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})]))\n")
    root = str(Path(harness.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    exit_code, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert exit_code in (0, 1) and heavy == []
    assert (runs["attributes"] / "signoff.json").is_file()
