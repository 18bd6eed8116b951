"""Sign-off: policies, each rule's PASS/WARN/FAIL, signoff.json, JUnit XML and the CLI exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from harness import signoff as so
from harness.errors import ConfigError
from harness.metrics.stats import run_stats
from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits
from harness.rundir import RunWriter, read_run
from support.synthetic_runs import make_run_dir

MILD = {"fp32": {}, "int8": {"majority": (0.95, 0.3), "minority": (0.7, 0.8)}}
LENIENT = {"max_worst_group_drop": 0.5, "max_psi": 0.5, "judge_on_upper_bound": True, "max_flip_rate_ratio": 50.0,
           "min_group_size": 10, "require_devices": ["local"], "require_delegates": ["xnnpack"]}
STRICT = {"max_worst_group_drop": 0.005, "max_psi": 0.5, "min_group_size": 10}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("signoff") / "run", variants=MILD)


@pytest.fixture(scope="module")
def stats(run_dir):
    return run_stats(read_run(run_dir), n_resamples=400)


def write_policy(path: Path, policy: dict) -> Path:
    lines = []
    for key, value in policy.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def verdict_of(run_dir, policy: dict, stats=None):
    run = read_run(run_dir)
    return so.judge(run, stats if stats is not None else run_stats(run, n_resamples=400),
                    so.parse_policy(policy, "test policy"))


def rule(verdict, name):
    return next(r for r in verdict.rules if r.rule == name)


def test_strict_policy_fails_naming_the_rule(run_dir, stats):
    v = verdict_of(run_dir, STRICT, stats)
    assert v.verdict == so.FAIL
    assert [r.rule for r in v.rules if r.status == so.FAIL] == ["max_worst_group_drop"]
    failing = rule(v, "max_worst_group_drop")
    assert "minority" in failing.message and "int8 / local / xnnpack" in failing.message
    assert failing.observed == pytest.approx(stats.disparity["worst_group_drop"].max())


def test_lenient_policy_passes(run_dir, stats):
    v = verdict_of(run_dir, LENIENT, stats)
    assert v.verdict == so.PASS, so.format_verdict(v)
    assert [r.rule for r in v.rules] == list(LENIENT.keys())[:2] + ["max_flip_rate_ratio", "min_group_size",
                                                                   "require_devices", "require_delegates",
                                                                   "jobs_completed"]


def test_point_estimate_within_limit_but_interval_beyond_is_warn_or_fail_on_upper_bound(run_dir, stats):
    d = stats.disparity.sort_values("worst_group_drop").iloc[-1]
    limit = (d["worst_group_drop"] + d["worst_group_drop_hi"]) / 2
    assert d["worst_group_drop"] < limit < d["worst_group_drop_hi"]
    warn = verdict_of(run_dir, {"max_worst_group_drop": float(limit)}, stats)
    assert warn.verdict == so.WARN and rule(warn, "max_worst_group_drop").status == so.WARN
    upper = verdict_of(run_dir, {"max_worst_group_drop": float(limit), "judge_on_upper_bound": True}, stats)
    assert upper.verdict == so.FAIL
    assert rule(upper, "max_worst_group_drop").observed == pytest.approx(d["worst_group_drop_hi"])


def test_min_group_size_and_coverage_rules(run_dir, stats):
    v = verdict_of(run_dir, {"min_group_size": 200, "require_devices": ["local", "pixel7"],
                             "require_delegates": ["xnnpack", "gpu"]}, stats)
    assert rule(v, "min_group_size").status == so.FAIL and "minority (n=150)" in rule(v, "min_group_size").message
    assert rule(v, "require_devices").status == so.FAIL and "pixel7" in rule(v, "require_devices").message
    assert "local" not in rule(v, "require_devices").message.split(":")[1]
    delegates = rule(v, "require_delegates")
    # with required devices, each delegate must have run on each of them
    assert delegates.status == so.FAIL and "gpu on local: no finished job" in delegates.message
    assert "xnnpack on pixel7: no finished job" in delegates.message and "xnnpack on local" not in delegates.message
    anywhere = verdict_of(run_dir, {"require_delegates": ["gpu"]}, stats)
    assert "gpu on (any): no finished job" in rule(anywhere, "require_delegates").message


@pytest.mark.parametrize("applied, status", [("none", so.FAIL), ("unknown", so.WARN), ("xnnpack", so.PASS)])
def test_a_delegate_counts_only_if_it_really_ran(tmp_path, applied, status):
    run_dir = make_run_dir(tmp_path / "run", variants={"fp32": {}}, delegate_applied=applied)
    v = verdict_of(run_dir, {"require_delegates": ["xnnpack"]})
    assert rule(v, "require_delegates").status == status
    assert v.verdict == status


def test_failed_jobs_fail_or_warn_under_allow_failed_jobs_and_no_finished_job_fails(tmp_path):
    some = make_run_dir(tmp_path / "some", variants=MILD, failed=[("int8", "local", "xnnpack")])
    v = verdict_of(some, {})
    assert [r.rule for r in v.rules] == ["jobs_completed"] and v.verdict == so.FAIL
    assert "int8 / local / xnnpack (failed at run" in v.rules[0].message
    allowed = verdict_of(some, {"allow_failed_jobs": True})
    assert allowed.verdict == so.WARN and "(allow_failed_jobs)" in allowed.rules[0].message
    none = make_run_dir(tmp_path / "none", variants={"int8": {}}, failed=[("int8", "local", "xnnpack")])
    v = verdict_of(none, {"max_worst_group_drop": 0.5, "allow_failed_jobs": True})
    assert v.verdict == so.FAIL and rule(v, "jobs_completed").status == so.FAIL


def _with_plan(run_dir: Path, plan: list[list[str]]) -> Path:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "plan": plan}))
    return run_dir


def test_signoff_judges_the_plan_not_the_files(tmp_path):
    """One job finished of twelve planned (four on a phone whose connection failed): never a PASS
    of "all 1 jobs"; every missing job is named."""
    run = make_run_dir(tmp_path / "run", variants={"fp32": {}})
    done = read_run(run).jobs()
    assert len(done) == 1
    plan = [[v, t, d] for v in ("fp32", "int8", "float16") for t in ("local", "pixel7") for d in ("xnnpack", "gpu")]
    plan = [list(done[0])] + [job for job in plan if tuple(job) != done[0]][:11]
    v = verdict_of(_with_plan(run, plan), {})
    r = rule(v, "jobs_completed")
    assert v.verdict == so.FAIL and r.status == so.FAIL
    assert r.message.startswith("11 of 12 planned jobs did not finish")
    assert {e["job"] for e in r.evidence} == {" / ".join(job) for job in plan[1:]}
    assert all(e["status"] == "missing" for e in r.evidence)
    assert "int8 / pixel7 / gpu" in {e["job"] for e in r.evidence}
    assert rule(verdict_of(run, {"allow_failed_jobs": True}), "jobs_completed").status == so.WARN
    complete = make_run_dir(tmp_path / "ok", variants=MILD)
    _with_plan(complete, [list(job) for job in read_run(complete).jobs()])
    assert rule(verdict_of(complete, {}), "jobs_completed").message == "all 2 planned jobs finished"


def flip_run(path: Path, flips: dict[str, int], sizes: dict[str, int]) -> Path:
    """Every reference prediction right; the variant gets the first ``flips[g]`` samples of g wrong."""
    groups = np.array([g for g in sorted(sizes) for _ in range(sizes[g])])
    n = groups.size
    test = GroupedDataset(name="flips", ids=np.array([f"i{i}" for i in range(n)]), x=np.zeros((n, 0), np.uint8),
                          y=np.zeros(n, np.int64), group=groups, split=np.full(n, "test"), num_classes=2)
    z_ref = np.tile(np.array([[2.0, 0.0]], np.float32), (n, 1))
    z_var = z_ref.copy()
    for g, k in flips.items():
        z_var[np.flatnonzero(groups == g)[:k]] = [0.0, 2.0]
    writer = RunWriter(path)
    writer.write_manifest({"dataset": {"name": "flips"}})
    ref = Logits(ids=test.ids, values=z_ref)
    writer.add_reference(ref, test)
    run = DeviceRun("int8", "local", "xnnpack", None, z_var, delegate_applied="xnnpack")
    writer.add_run(run, score_job(run, ref, test))
    return path


@pytest.mark.parametrize("flips, status", [
    ({"major": 20, "minor": 30}, so.FAIL),   # 30 % vs 10 %: ratio 3, on 30 flips
    ({"major": 2, "minor": 3}, so.WARN),     # 3 % vs 1 %: ratio 3, but on only 3 flips
    ({"major": 20, "minor": 15}, so.PASS),   # ratio 1.5
    ({"major": 0, "minor": 0}, so.PASS),     # no flips anywhere: ratio 1
    ({"major": 0, "minor": 8}, so.FAIL),     # majority never flips: ratio infinite
])
def test_flip_rate_ratio(tmp_path, flips, status):
    run_dir = flip_run(tmp_path / "run", flips, {"major": 200, "minor": 100})
    v = verdict_of(run_dir, {"max_flip_rate_ratio": 2.0})
    r = rule(v, "max_flip_rate_ratio")
    assert r.status == status, r.message
    assert r.evidence[0]["majority"] == "major" and r.evidence[0]["group"] == "minor"


def test_unknown_and_malformed_policy_keys_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown policy key 'max_drop'"):
        so.parse_policy({"max_psi": 0.01, "max_drop": 0.02}, "p.toml")
    for key, value in (("max_psi", 2), ("max_psi", "0.01"), ("min_group_size", True), ("min_group_size", 0),
                       ("judge_on_upper_bound", 1), ("require_devices", "pixel7"), ("max_flip_rate_ratio", -1)):
        with pytest.raises(ConfigError, match=f"policy key '{key}'"):
            so.parse_policy({key: value}, "p.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_psi = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        so.load_policy(bad)
    with pytest.raises(ConfigError, match="cannot read policy"):
        so.load_policy(tmp_path / "missing.toml")


def test_default_policy_ships_with_the_package():
    policy = so.load_policy(None)
    assert policy.source.startswith("(default)")
    assert policy.max_worst_group_drop == 0.02 and policy.min_group_size == 100
    assert policy.require_devices is None  # coverage is deployment-specific


def test_junit_xml_has_one_testcase_per_rule(run_dir, stats, tmp_path):
    v = verdict_of(run_dir, {**STRICT, "require_devices": ["pixel7"]}, stats)
    path = so.write_junit(v, tmp_path / "ci" / "signoff.xml")
    root = ET.parse(path).getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [r.rule for r in v.rules]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["max_worst_group_drop", "require_devices"]
    assert root.find("testsuite").get("failures") == "2" and root.find("testsuite").get("tests") == str(len(cases))


def test_a_delegate_counts_as_applied_by_its_kind_or_its_full_name():
    from harness.signoff import _applied

    assert _applied("edgetpu:usb", "edgetpu") is True
    assert _applied("nnapi:qti-dsp", "nnapi:qti-dsp") is True
    assert _applied("external:/v/libx.so,cache=1", "external:/v/libx.so") is True
    assert _applied("edgetpu:usb", "none") is False and _applied("gpu", "unknown") is None


def test_an_unproven_or_partial_gpu_job_warns_never_passes():
    from harness.signoff import _applied

    assert _applied("gpu", "gpu") is True
    for applied in ("gpu (unproven)", "gpu (partial)", "gpu-fp32 (partial, unproven)"):
        assert _applied(applied.split()[0], applied) is None, applied


def test_require_delegates_names_the_runtimes_and_versions_of_its_jobs(tmp_path):
    run_dir = make_run_dir(tmp_path / "run", variants={"int8": {}}, targets=("local", "board"))
    r = rule(verdict_of(run_dir, {"require_delegates": ["xnnpack"]}), "require_delegates")
    assert r.status == so.PASS and [e["runtimes"] for e in r.evidence] == [["ai_edge_litert 2.3.0"]]
    assert "(runtime: ai_edge_litert 2.3.0)" in r.message
    runs = [{"variant": "int8", "target": "local", "delegate": "reference", "status": "ok",
             "runtime": "ai_edge_litert", "runtime_version": "2.3.0"},
            {"variant": "int8", "target": "board", "delegate": "reference", "status": "ok",
             "runtime": "tflite_runtime", "runtime_version": "2.14.0"},
            {"variant": "int8", "target": "old", "delegate": "reference", "status": "ok"}]
    mixed = so._delegates_rule(("reference",), ("local", "board"), runs)
    assert [e["runtimes"] for e in mixed.evidence] == [["ai_edge_litert 2.3.0"], ["tflite_runtime 2.14.0"]]
    assert "jobs on different runtimes: ai_edge_litert 2.3.0; tflite_runtime 2.14.0" in mixed.message
    anywhere = so._delegates_rule(("reference",), None, runs)
    assert anywhere.evidence[0]["runtimes"] == ["ai_edge_litert 2.3.0", "tflite_runtime 2.14.0", "unknown"]
