"""Sharded test sets end to end on the real runner: digits-groups (719 test samples) cut into shards
of 200, run on local devices.

A sharded sweep gives predictions identical to an unsharded one and records which shard ran where;
a pool spreads one variant's shards over its members; a sweep stopped on shard k of a job (the
device error a vanished phone raises, at the one seam between the sweep and the device,
``py_runner.run_job``) resumes with only the shards that had not finished.
"""

import numpy as np
import pytest

from harness import config, datasets, on_device, rundir
from harness.errors import TargetError
from harness.evaluate import ModelSource, evaluate
from harness.rundir import layout
from harness.runners import python as py_runner

VARIANTS = ["fp32", "int8"]
SHARD = 200
SIZES = [200, 200, 200, 119]  # digits-groups' 719 test samples


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, small_cnn):
    """The same sweep with the default shard size (one shard): what every sharded run must equal."""
    out = tmp_path_factory.mktemp("unsharded") / "run"
    evaluate(_experiment(out.parent, None), datasets.load("digits-groups"), _source(small_cnn), out, progress=False)
    return rundir.read_run(out)


def _source(model):
    return ModelSource(model, {"source": "test", "sha256": "x"})


def _experiment(folder, shard_samples, names=("local",), pool=""):
    return config.from_dict(_settings(folder, shard_samples, names, pool), source="test")


def _settings(folder, shard_samples, names=("local",), pool=""):
    """Local devices ``names`` with their own work folders below ``folder`` (a fresh device cache)."""
    devices = folder / "devices.toml"
    devices.write_text("".join(f'[[device]]\nname = "{n}"\nreach = "local"\nworkdir = "{folder / n}"\n'
                               + (f'pool = "{pool}"\n' if pool else "") for n in names))
    run = {"targets": [pool] if pool else list(names), "devices_file": str(devices)}
    if shard_samples is not None:
        run["shard_samples"] = shard_samples
    return {"quantize": {"variants": VARIANTS}, "run": run}


def _same_predictions(run, expected, target="local") -> None:
    for variant in VARIANTS:
        got = run.predictions[run.predictions.variant == variant].reset_index(drop=True)
        want = expected.predictions[expected.predictions.variant == variant].reset_index(drop=True)
        assert got.id.tolist() == want.id.tolist() and set(got.target) == {target}
        assert np.array_equal(np.stack(got.logits), np.stack(want.logits))


def _counting(monkeypatch, fail_on_call=None, error=lambda name: TargetError("device went away", device=name)):
    real_run_job, calls, failed = py_runner.run_job, [], []

    def counted(target, artifact, test, *args, **kwargs):
        calls.append((artifact.variant, str(test.ids[0]), len(test), target.name))
        if len(calls) == fail_on_call and not failed:
            failed.append(target.name)
            raise error(target.name)
        return real_run_job(target, artifact, test, *args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", counted)
    return calls


def test_a_sharded_sweep_equals_an_unsharded_one_and_records_its_shards(tmp_path, monkeypatch, small_cnn,
                                                                         unsharded):
    data = datasets.load("digits-groups")
    test_ids = data.subset("test").ids
    calls = _counting(monkeypatch)
    real_serve, served = py_runner._served_runner, []
    monkeypatch.setattr(py_runner, "_served_runner", lambda *a: served.append(a[0].name) or real_serve(*a))
    out = tmp_path / "run"
    evaluate(_experiment(tmp_path, SHARD), data, _source(small_cnn), out, progress=False)
    assert served == ["local"]  # the served runner stays up across the shards: one start for 8 jobs
    starts = [str(test_ids[i]) for i in range(0, 719, SHARD)]
    assert calls == [(v, s, n, "local") for v in VARIANTS for s, n in zip(starts, SIZES)]

    run = rundir.read_run(out)
    _same_predictions(run, unsharded)
    entries = {r["variant"]: r for r in run.summary["runs"]}
    for variant, entry in entries.items():
        assert [(s["index"], s["n"], s["device"]) for s in entry["shards"]] == [
            (i, n, "local") for i, n in enumerate(SIZES)]
        assert entry["n"] == 719 and len(entry["timings"]["per_batch_s"]) == sum(-(-n // 64) for n in SIZES)
    # each shard's inputs went to the device once: for the first variant, not for the second
    assert entries["fp32"]["transfer"]["pushed"]["inputs"] > 0
    assert entries["int8"]["transfer"]["pushed"]["inputs"] == 0
    assert [s["sha256"] for s in entries["fp32"]["shards"]] == [s["sha256"] for s in entries["int8"]["shards"]]
    assert not list((out / layout.STAGING_DIR).iterdir())  # staged shards go once their job is stored
    unsharded_entry = next(r for r in unsharded.summary["runs"] if r["variant"] == "fp32")
    assert [s["n"] for s in unsharded_entry["shards"]] == [719]


@pytest.mark.parametrize("error", [lambda name: TargetError("device went away", device=name),
                                   lambda name: KeyboardInterrupt()], ids=["device error", "Ctrl-C"])
def test_a_sweep_stopped_on_a_shard_resumes_with_only_the_missing_shards(tmp_path, monkeypatch, small_cnn,
                                                                          unsharded, error):
    data = datasets.load("digits-groups")
    out = tmp_path / "run"
    calls = _counting(monkeypatch, fail_on_call=3, error=error)  # fp32's third shard
    with pytest.raises((TargetError, KeyboardInterrupt)):
        evaluate(_experiment(tmp_path, SHARD), data, _source(small_cnn), out, progress=False)
    assert rundir.read_run(out).jobs() == []
    staged = sorted(p.name for p in (out / layout.STAGING_DIR).iterdir())
    assert [name.split("-")[1] for name in staged] == ["000000", "000001"]

    calls.clear()
    evaluate(_experiment(tmp_path, SHARD), data, _source(small_cnn), out, progress=False)
    test_ids = data.subset("test").ids
    assert calls == [("fp32", str(test_ids[400]), 200, "local"), ("fp32", str(test_ids[600]), 119, "local")] + [
        ("int8", str(test_ids[i * SHARD]), n, "local") for i, n in enumerate(SIZES)]
    run = rundir.read_run(out)
    _same_predictions(run, unsharded)
    assert not list((out / layout.STAGING_DIR).iterdir())


def test_a_pool_spreads_shards_over_its_members_and_a_lost_member_loses_only_its_shard(tmp_path, monkeypatch,
                                                                                      small_cnn, unsharded):
    real_run_job, calls = py_runner.run_job, []

    def m2_goes_away_once(target, artifact, test, *args, **kwargs):
        calls.append((target.name, artifact.variant, str(test.ids[0])))
        if target.name == "m2" and [c[0] for c in calls].count("m2") == 1:
            raise TargetError("device went away", device="m2")
        return real_run_job(target, artifact, test, *args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", m2_goes_away_once)
    out = tmp_path / "run"
    evaluate(_experiment(tmp_path, SHARD, ("m1", "m2"), pool="p"), datasets.load("digits-groups"),
             _source(small_cnn), out, progress=False)
    assert len(calls) == 9  # 2 variants x 4 shards, and the one shard m2 lost, run again on m1
    lost = next(c for c in calls if c[0] == "m2")
    assert sum(1 for c in calls if c[1:] == lost[1:]) == 2  # only that shard ran twice
    run = rundir.read_run(out)
    _same_predictions(run, unsharded, target="p")
    entry = next(r for r in run.summary["runs"] if r["variant"] == lost[1])
    assert [(a["device"], a["error"]) for a in entry["attempts"]] == [("m2", "[m2] device went away")]
    retried = entry["shards"][entry["attempts"][0]["shard"]]
    assert retried["device"] == "m1"
    assert {s["device"] for r in run.summary["runs"] for s in r["shards"]} == {"m1", "m2"}  # both took shards


def test_a_job_whose_shards_all_ran_but_that_was_not_stored_is_stored_on_resume_without_running(
        tmp_path, monkeypatch, small_cnn, unsharded):
    from harness.farm import job

    data, out = datasets.load("digits-groups"), tmp_path / "run"
    real_score, scored = job.score_job, []

    def host_fails_once(*args):
        scored.append(1)
        if len(scored) == 1:
            raise OSError("disk full")  # the host could not score/store fp32 once its shards were in
        return real_score(*args)

    monkeypatch.setattr(job, "score_job", host_fails_once)
    settings = _settings(tmp_path, SHARD)
    settings["quantize"]["variants"] = ["fp32"]
    with pytest.raises(OSError, match="disk full"):
        evaluate(config.from_dict(settings, source="test"), data, _source(small_cnn), out, progress=False)
    assert len(list((out / layout.STAGING_DIR).iterdir())) == 4 and rundir.read_run(out).jobs() == []

    calls = _counting(monkeypatch)
    evaluate(config.from_dict(settings, source="test"), data, _source(small_cnn), out, progress=False)
    assert calls == []  # every shard was kept: nothing runs again
    run = rundir.read_run(out)
    assert run.jobs() == [("fp32", "local", "xnnpack")] and not list((out / layout.STAGING_DIR).iterdir())
    got = run.predictions[run.predictions.variant == "fp32"]
    want = unsharded.predictions[unsharded.predictions.variant == "fp32"]
    assert np.array_equal(np.stack(got.logits), np.stack(want.logits))


def test_a_repeated_sharded_job_reports_its_noise_over_all_shards(tmp_path, small_cnn, unsharded):
    settings = _settings(tmp_path, SHARD)
    settings["run"]["repeat"] = 2
    settings["quantize"]["variants"] = ["int8"]
    out = tmp_path / "run"
    evaluate(config.from_dict(settings, source="test"), datasets.load("digits-groups"), _source(small_cnn), out,
             progress=False)
    (entry,) = rundir.read_run(out).summary["runs"]
    assert entry["repeat"]["runs"] == 2 and entry["repeat"]["identical"] is True
    assert len(entry["repeat"]["latency_ms_per_sample"]) == 2 and len(entry["shards"]) == 4


# The driver, killed: a child process runs the sweep; its third device job never returns, and the
# child is killed (SIGKILL, no cleanup) once the first two shards are kept in the run directory.
KILLED_DRIVER = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from harness import config, datasets
from harness.evaluate import ModelSource, evaluate
from harness.runners import python as py_runner
from models.train import train_or_load

data = datasets.load("digits-groups")
model = train_or_load("small_cnn", data, seed=0, progress=False).model
real_run_job, calls = py_runner.run_job, []

def third_hangs(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        threading.Event().wait()
    return real_run_job(*args, **kwargs)

py_runner.run_job = third_hangs
exp = config.from_dict(json.loads(sys.argv[2]), source="test")
evaluate(exp, data, ModelSource(model, {"source": "test", "sha256": "x"}), sys.argv[3], progress=False)
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_with_only_the_unfinished_shards(tmp_path, monkeypatch, small_cnn, unsharded):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out, settings = tmp_path / "run", _settings(tmp_path, SHARD)
    child = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER, str(repo), json.dumps(settings), str(out)],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    staging, deadline = out / layout.STAGING_DIR, time.monotonic() + 300
    try:
        while not (staging.is_dir() and len(list(staging.glob("*.npz"))) == 2):
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child kept no two shards in 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert rundir.read_run(out).jobs() == []

    calls = _counting(monkeypatch)
    evaluate(config.from_dict(settings, source="test"), datasets.load("digits-groups"), _source(small_cnn), out,
             progress=False)
    assert [(v, n) for v, _, n, _ in calls] == [("fp32", 200), ("fp32", 119)] + [("int8", n) for n in SIZES]
    _same_predictions(rundir.read_run(out), unsharded)
    assert not list(staging.iterdir())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from support import tiny_models

    return tiny_models.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


def test_a_kept_shard_of_another_model_file_is_run_again_not_joined_to_the_new_ones(tmp_path, monkeypatch, tiny):
    """The variant's file changed between the sessions (re-converted by a newer converter, another
    precompiled file), while the experiment, and so the config hash, stayed the same: the shard kept
    from the old file must not be joined to shards of the new one."""
    from harness.model_source import ModelSource
    from harness.quantize.convert import artifact_of

    data, out = datasets.load("digits-groups"), tmp_path / "run"
    settings = _settings(tmp_path, SHARD)
    settings["quantize"]["variants"] = ["fp32"]
    source = ModelSource.from_tflite(tiny["fp32"])

    def sweep(model_file):  # fp32 from the model, and an "int8" built elsewhere (as qskew mitigate's)
        evaluate(config.from_dict(settings, source="test"), data, source, out, progress=False,
                 extra_artifacts=[artifact_of(model_file, "int8", {"tool": "given"}, None, 64)])

    calls = _counting(monkeypatch, fail_on_call=6)  # int8's second shard: its first is kept
    with pytest.raises(TargetError):
        sweep(tiny["int8"])
    assert len(list((out / layout.STAGING_DIR).iterdir())) == 1
    calls.clear()
    sweep(tiny["int16x8"])  # another file under the same variant name
    assert [(v, n) for v, _, n, _ in calls] == [("int8", n) for n in SIZES]  # every shard, the kept one too
    run = rundir.read_run(out)
    entry = next(r for r in run.summary["runs"] if r["variant"] == "int8")
    assert entry["artifact_sha256"] == on_device.sha256_file(tiny["int16x8"])
    fresh = tmp_path / "fresh"
    evaluate(config.from_dict(settings, source="test"), data, source, fresh, progress=False,
             extra_artifacts=[artifact_of(tiny["int16x8"], "int8", {"tool": "given"}, None, 64)])
    want = rundir.read_run(fresh).logits("int8", "local", "xnnpack").values
    np.testing.assert_array_equal(run.logits("int8", "local", "xnnpack").values, want)
