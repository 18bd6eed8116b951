"""Faults on a device over ADB lose nothing already finished; rerunning finishes only the rest.

A simulated ADB device vanishes in the middle of the second job's push, run or pull (the
simulator's own fault hooks, armed through the target qskew opened); the sweep must stop with one
error naming the device, keep the first job in the run directory, and a rerun of the same command
(a fresh simulated device on the same file system) must run only the jobs that had not finished.
The same holds for a device whose disk is full and for a runner that crashes.
"""

import pytest

from harness import config, datasets, rundir
from harness.runners import python as py_runner
from harness.targets.simulate import sandbox
from harness.errors import TargetError
from harness.evaluate import ModelSource, evaluate
from harness.farm import connect

VARIANTS = ["fp32", "int8", "float16"]


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


def _sweep(tmp_path, small_cnn, monkeypatch, arm):
    """Run VARIANTS on a fresh simulated device; ``arm(target, n)`` runs before job n (1-based)."""
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "sim-faulty"\nreach = "simulated"\n')
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))  # a device of its own
    exp = config.from_dict({"quantize": {"variants": VARIANTS},
                            "run": {"targets": ["sim-faulty"], "devices_file": str(devices)}}, source="test")
    source = ModelSource(small_cnn, {"source": "test", "sha256": "x"})
    real_run_job, calls = py_runner.run_job, []

    def watched(target, artifact, *args, **kwargs):
        calls.append(artifact.variant)
        arm(target, len(calls))
        return real_run_job(target, artifact, *args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", watched)
    return lambda out: (calls.clear(), evaluate(exp, datasets.load("digits-groups"), source, out,
                                                progress=False), list(calls))[2]


@pytest.mark.slow
@pytest.mark.parametrize("stage, nbytes", [("push", 20_000), ("run", 0), ("pull", 1_000)])
def test_device_vanishing_mid_job(tmp_path, small_cnn, monkeypatch, stage, nbytes):
    monkeypatch.setattr(sandbox, "RUN_FAULT_DELAY_S", 0.1)
    if stage == "run":  # the fault fires on a runner started after it is armed: one runner per job
        monkeypatch.setattr(py_runner, "SERVED_RUNNER", False)
    armed = []

    def arm(target, n):
        if n == 2 and not armed:
            armed.append(stage)
            target.simulator.vanish_after(stage, nbytes)

    sweep = _sweep(tmp_path, small_cnn, monkeypatch, arm)
    out = tmp_path / "run"
    with pytest.raises(TargetError) as info:
        sweep(out)
    assert info.value.device == "sim-faulty" and "sim-faulty" in str(info.value)
    assert rundir.read_run(out).jobs() == [("fp32", "sim-faulty", "xnnpack")]
    assert sweep(out) == ["int8", "float16"]  # only what had not finished
    assert sorted(v for v, _, _ in rundir.read_run(out).jobs()) == sorted(VARIANTS)


@pytest.mark.slow
def test_full_device_disk(tmp_path, small_cnn, monkeypatch):
    real_open = connect._simulated
    full = []

    def small_disk(spec):
        target = real_open(spec)
        if not full:  # the first device's disk holds the runner, but not a test set
            target.simulator.disk_quota_bytes = 200_000
            full.append(True)
        return target

    monkeypatch.setattr(connect, "_simulated", small_disk)
    sweep = _sweep(tmp_path, small_cnn, monkeypatch, lambda target, n: None)
    out = tmp_path / "run"
    with pytest.raises(TargetError) as info:
        sweep(out)
    assert info.value.device == "sim-faulty" and "No space left on device" in str(info.value)
    assert sweep(out) == VARIANTS  # a roomier device (the quota is gone) finishes the sweep
