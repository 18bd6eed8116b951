"""A pool of three simulated ADB devices, one killed mid-run: the other two finish every job.

The devices share one pool label, so each job runs once under the pool's name. Device ``pool-b``
vanishes in the middle of its first job (the simulator's own fault hook): that job (and the next
one it takes, if any is left) fails for a device reason and runs again on another member (the
attempts are kept in the job record). The predictions (ids and logits) equal those of a clean run
on one device, and sign-off counts every job as finished.
"""

import json

import numpy as np
import pytest

from harness import config, datasets, rundir, signoff
from harness.evaluate import ModelSource, evaluate
from harness.farm.progress import FARM_FILE
from harness.runners import python as py_runner
from harness.targets.simulate import sandbox

VARIANTS = ["fp32", "int8", "float16"]
DELEGATES = ["xnnpack", "reference"]
POOL = "sims"


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


def _experiment(tmp_path, targets, variants=VARIANTS):
    devices = tmp_path / "devices.toml"
    devices.write_text("".join(f'[[device]]\nname = "pool-{x}"\nreach = "simulated"\npool = "{POOL}"\n'
                               for x in "abc") + '[[device]]\nname = "solo"\nreach = "simulated"\n')
    return config.from_dict({"quantize": {"variants": variants},
                             "run": {"targets": targets, "devices_file": str(devices), "delegates": DELEGATES}},
                            source="test")


@pytest.mark.slow
def test_a_pool_member_killed_mid_run_loses_no_job(tmp_path, small_cnn, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sandbox, "RUN_FAULT_DELAY_S", 0.1)
    data = datasets.load("digits-groups")
    source = ModelSource(small_cnn, {"source": "test", "sha256": "x"})
    real_run_job, calls = py_runner.run_job, []

    def watched(target, artifact, *args, **kwargs):
        calls.append(target.name)
        if target.name == "pool-b" and calls.count("pool-b") == 1:
            target.simulator.vanish_after("run", 0)  # killed while its first job runs
        return real_run_job(target, artifact, *args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", watched)
    pooled, lines = tmp_path / "pooled", []
    evaluate(_experiment(tmp_path, [POOL]), data, source, pooled, progress=False, echo=lines.append)
    assert calls.count("pool-b") <= 2 and {"pool-a", "pool-c"} <= set(calls)

    run = rundir.read_run(pooled)
    jobs = [(v, POOL, d) for v in VARIANTS for d in DELEGATES]
    assert sorted(run.jobs()) == sorted(jobs) and not run.jobs("failed")
    entries = {(r["variant"], r["delegate"]): r for r in run.summary["runs"]}
    retried = [r for r in entries.values() if r.get("attempts")]
    assert retried and all(a["device"] == "pool-b" for r in retried for a in r["attempts"])
    assert all(r["device"]["name"] in ("pool-a", "pool-c") for r in retried)
    assert {r["device"]["serial"] for r in entries.values()} <= {f"qskew-sim-pool-{x}" for x in "abc"}
    farm = json.loads((pooled / FARM_FILE).read_text())
    # every failed attempt is a retry in the farm summary; pool-b is drained if it failed a second job
    # (when the others have not emptied the queue while it tried to reconnect)
    assert len(farm["retries"]) == sum(len(r["attempts"]) for r in retried) >= 1
    assert ("pool-b" in farm["drained"]) == (len(farm["retries"]) >= 2)
    assert any("retrying on another device of pool sims" in line for line in lines)

    verdict = signoff.signoff(pooled, signoff.load_policy(None), n_resamples=50)
    rule = next(r for r in verdict.rules if r.rule == "jobs_completed")
    assert rule.status == signoff.PASS and rule.observed == len(jobs) and "after failed attempts" in rule.message

    monkeypatch.setattr(py_runner, "run_job", real_run_job)
    clean = tmp_path / "clean"
    evaluate(_experiment(tmp_path, ["solo"]), data, source, clean, progress=False)
    ref = rundir.read_run(clean)
    for variant in VARIANTS:
        for delegate in DELEGATES:
            a, b = run.logits(variant, POOL, delegate), ref.logits(variant, "solo", delegate)
            assert list(a.ids) == list(b.ids) and len(a.ids) == len(data.subset("test"))
            np.testing.assert_array_equal(a.values, b.values)


def test_a_pooled_run_stopped_mid_way_resumes_with_only_its_unfinished_jobs(tmp_path, small_cnn, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    data = datasets.load("digits-groups")
    source = ModelSource(small_cnn, {"source": "test", "sha256": "x"})
    exp = _experiment(tmp_path, [POOL], variants=["int8"])
    real_run_job, calls, failed = py_runner.run_job, [], []

    def failing_once(target, artifact, test, delegate, *args, **kwargs):
        calls.append((artifact.variant, delegate))
        if not failed:
            failed.append(calls[-1])
            raise RuntimeError("the host gave up")  # not a device reason: nothing stored, not retried
        return real_run_job(target, artifact, test, delegate, *args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", failing_once)
    out = tmp_path / "pooled"
    with pytest.raises(RuntimeError, match="the host gave up"):
        evaluate(exp, data, source, out, progress=False)
    first = set(rundir.read_run(out).jobs())
    jobs = {(v, POOL, d) for v in exp.quantize.variants for d in DELEGATES}
    assert len(first) == len(jobs) - 1 and (failed[0][0], POOL, failed[0][1]) not in first

    calls.clear()
    evaluate(exp, data, source, out, progress=False)  # the resume
    assert [(calls[0][0], POOL, calls[0][1])] == [j for j in jobs if j not in first] and len(calls) == 1
    run = rundir.read_run(out)
    assert set(run.jobs()) == jobs and len(run.summary["runs"]) == len(jobs)
