"""The benchmark_model runner kind over real ADB: a simulated device on loopback, the adb-shell
client, qskew's stand-in for TFLite's benchmark_model binary (no real binary runs in these tests).

The stand-in runs the same runtime as the Python runner, so for the same variant, kernels and batch
size the logits must be bit-identical; batches of more than one sample must be used.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness.runners import benchmark_model as bm
from harness.runners.benchmark_model_log import split_log
from harness.farm.connect import open_target
from harness.farm.inventory import from_dict
from harness.farm.runners import run_on_device
from harness.records import GroupedDataset, ModelArtifact, Preprocess
from support import tiny_models as tiny

N = 150           # 64 + 64 + 22
BATCH = 64
HOSTILE = "wd 'a\"b $(touch pwned) ;touch pwned2; `touch pwned3`, x:y"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


@pytest.fixture(scope="module")
def test_set() -> GroupedDataset:
    return GroupedDataset(
        name="tiny", ids=np.array([f"s{i}" for i in range(N)]), x=tiny.make_inputs(N, seed=3),
        y=np.arange(N) % tiny.NUM_CLASSES, group=np.array(["a", "b"] * (N // 2)),
        split=np.array(["test"] * N), num_classes=tiny.NUM_CLASSES,
        preprocess=Preprocess(scale=tiny.PREPROCESS_SCALE, offset=0.0))


def artifact(path: Path, variant: str) -> ModelArtifact:
    data = path.read_bytes()
    return ModelArtifact(variant=variant, path=path, sha256=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data), inputs=(), outputs=(), recipe={})


def spec_of(name: str, **extra):
    table = {"name": name, "reach": "simulated", "runner": "benchmark_model", "benchmark_model": "standin"}
    return from_dict({"device": [{**table, **extra}]}).get(name)


@pytest.fixture(scope="module")
def phone():
    spec = spec_of("bm-phone")
    target = open_target(spec)
    yield spec, target
    target.close()


def run(spec, target, art, test, delegate, **kw):
    return run_on_device(spec, target, art, test, delegate, num_threads=2, batch_size=BATCH, **kw)


def device_log(target) -> str:
    """The newest job's benchmark.log, read in the simulated device's file system (on the host)."""
    workdir = target.simulator.root / target.workdir.lstrip("/")
    logs = sorted(Path(workdir, "jobs").glob(f"*/{bm.LOG_FILE}"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text()


@pytest.mark.parametrize("delegate", ["xnnpack", "builtin"])
@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_same_logits_as_the_python_runner_with_batches_above_one(phone, models, test_set, variant, delegate):
    spec, target = phone
    art = artifact(models[variant], variant)
    got = run(spec, target, art, test_set, delegate)
    log = device_log(target)
    ref = run(dataclasses.replace(spec, runner="python", benchmark_model=""), target, art, test_set, delegate)
    assert got.ok and ref.ok, (got.error, ref.error)
    assert np.array_equal(got.logits, ref.logits) and got.logits.shape == (N, tiny.NUM_CLASSES)
    assert (got.runtime, ref.runtime) == ("benchmark_model", "ai_edge_litert")
    assert got.batch_size == ref.batch_size == BATCH
    sections = split_log(log)
    assert [(i, rc) for i, rc, _ in sections] == [(0, 0), (1, 0), (2, 0)] and got.timings.invocations == 3
    assert [line for line in log.splitlines() if "Input shapes:" in line] == \
        ["INFO: Input shapes: [64,8,8,1]"] * 2 + ["INFO: Input shapes: [22,8,8,1]"]
    assert log.count("qskew benchmark_model stand-in (not TFLite's binary), Python") == 3
    assert got.delegate_applied == ref.delegate_applied
    assert got.transfer.bytes_pulled > N * tiny.NUM_CLASSES and got.transfer.pull_s > 0


def test_progress_comes_back_while_the_job_runs(phone, models, test_set):
    spec, target = phone
    seen = []
    run = run_on_device(spec, target, artifact(models["int8"], "int8"), test_set, "builtin",
                        num_threads=2, batch_size=8, progress=lambda done, total: seen.append((done, total)))
    assert run.ok and run.timings.invocations == 19  # 18 x 8 + 6
    assert seen and {total for _, total in seen} == {N} and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all(d % 8 == 0 or d == N for d, _ in seen)


def test_a_delegate_the_device_lacks_is_the_jobs_error_naming_the_device(phone, models, test_set):
    spec, target = phone
    run = run_on_device(spec, target, artifact(models["int8"], "int8"), test_set, "external:/vendor/lib/libnope.so")
    # like the real binary, the stand-in logs the failed load, runs on the CPU and exits 0: the job
    # fails because no invocation confirmed the delegate, quoting the binary's own line
    assert run.error.startswith("delegate: benchmark_model did not apply the EXTERNAL delegate in invocation 0")
    assert "Unable to load external delegate from : /vendor/lib/libnope.so" in run.error
    assert "device bm-phone" in run.error and run.logits is None
    gpu = run_on_device(spec, target, artifact(models["int8"], "int8"), test_set, "gpu")
    assert gpu.error.startswith("delegate: benchmark_model did not apply the GPU delegate") and gpu.logits is None


def test_a_hostile_work_folder_on_the_device(models, test_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_of("bm-hostile", workdir=f"data/local/tmp/{HOSTILE}")  # the device's only writable place
    art = artifact(models["int8"], "int8")
    with open_target(spec) as target:
        assert HOSTILE in target.workdir
        run = run_on_device(spec, target, art, test_set, "xnnpack", num_threads=2, batch_size=BATCH)
        ref = run_on_device(dataclasses.replace(spec, runner="python", benchmark_model=""), target, art,
                            test_set, "xnnpack", num_threads=2, batch_size=BATCH)
        root = target.simulator.root
    assert run.ok, run.error
    assert np.array_equal(run.logits, ref.logits)
    assert not list(root.rglob("pwned*")) and not list(tmp_path.rglob("pwned*"))


def test_the_local_target_runs_the_same_kind(models, test_set, tmp_path):
    spec = from_dict({"device": [{"name": "here", "reach": "local", "runner": "benchmark_model",
                                  "benchmark_model": "standin", "workdir": str(tmp_path / "dev")}]}).get("here")
    with open_target(spec) as target:
        run = run_on_device(spec, target, artifact(models["int8"], "int8"), test_set, "xnnpack",
                            num_threads=2, batch_size=BATCH)
    assert run.ok and run.runtime == "benchmark_model" and run.batch_size == BATCH

