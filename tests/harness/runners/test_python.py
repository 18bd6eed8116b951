"""harness/runners/python.py: the Python runner's jobs (and their lifecycle through harness/on_device.py)
on a LocalTarget with real tiny models and the real runtime."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import harness.runners.python as python_runner
from harness.errors import CommandTimeout, ConfigError, ProtocolMismatch, RunnerError, TargetError
from harness.runners.python import run_job
from harness.records import GroupedDataset, ModelArtifact
from harness.targets.local import LocalTarget
from support import tiny_models as tiny
from support.adb_sim import when

N_SAMPLES = 150  # 64 + 64 + 22 with batch 64
HOSTILE_NAME = "wd 'a\"b $(touch pwned) ;touch pwned2; `touch pwned3`"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "host-cache"))


@pytest.fixture(scope="module")
def test_set() -> GroupedDataset:
    return tiny.make_test_set(N_SAMPLES)


def artifact(path: Path, variant: str = "v") -> ModelArtifact:
    data = path.read_bytes()
    return ModelArtifact(variant=variant, path=path, sha256=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data), inputs=(), outputs=(), recipe={})


def bare_loop(model: Path, x: np.ndarray, delegate: str, num_threads: int, batch: int):
    """The interpreter driven directly (same resolver, threads and batch size as the job);
    returns (raw outputs, (output scale, output zero point))."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"xnnpack": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF,
                "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[delegate]
    interp = Interpreter(model_path=str(model), num_threads=num_threads,
                         experimental_op_resolver_type=resolver)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    xf = x.astype(np.float32) * np.float32(tiny.PREPROCESS_SCALE)
    if inp["dtype"] != np.float32:  # TFLite rounds half away from zero
        scale, zero_point = inp["quantization"]
        q = xf / np.float32(scale)
        q = np.sign(q) * np.floor(np.abs(q) + np.float32(0.5)) + zero_point
        xf = np.clip(q, np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
    rows = []
    for start in range(0, len(x), batch):
        xb = xf[start:start + batch]
        interp.resize_tensor_input(inp["index"], list(xb.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        rows.append(interp.get_tensor(out["index"]))
    return np.concatenate(rows), out["quantization"]


@pytest.mark.parametrize("delegate", ["xnnpack", "reference", "builtin"])
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_outputs_are_bit_identical_to_the_bare_interpreter(variant, delegate, models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    run = run_job(target, artifact(models[variant], variant), test_set, delegate, num_threads=2, batch_size=64)
    assert run.ok, run.error
    expected, (scale, zero_point) = bare_loop(models[variant], test_set.x, delegate, 2, 64)
    assert run.raw.dtype == expected.dtype == (np.int8 if variant == "int8" else np.float32)
    assert np.array_equal(run.raw, expected)
    dequantized = (expected.astype(np.float32) - zero_point) * np.float32(scale) if scale else expected
    assert run.logits.dtype == np.float32 and np.array_equal(run.logits, dequantized)
    assert run.delegate == delegate and run.delegate_applied == ("xnnpack" if delegate == "xnnpack" else "none")
    assert run.batch_size == 64 and run.runtime == "ai_edge_litert" and run.runtime_version
    assert run.variant == variant and run.artifact_sha256 == artifact(models[variant]).sha256
    assert run.target == "local" and run.target_properties["name"] == "local"


def test_second_run_pushes_nothing_but_the_job(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    first = run_job(target, artifact(models["int8"]), test_set)
    second = run_job(target, artifact(models["int8"]), test_set)
    size = models["int8"].stat().st_size
    assert first.transfer.pushed["model"] == size and first.transfer.pushed["inputs"] > test_set.x.nbytes
    assert first.transfer.pushed["runner"] > 0
    assert {k: second.transfer.pushed[k] for k in ("model", "inputs", "runner")} == \
        {"model": 0, "inputs": 0, "runner": 0}
    assert second.transfer.bytes_pushed == second.transfer.pushed["job"] > 0
    assert second.transfer.bytes_pulled > 0 and np.array_equal(first.raw, second.raw)
    cache = Path(target.workdir) / "cache"
    assert sorted(p.suffix for p in cache.iterdir()) == [".npy", ".tflite"]
    assert (cache / f"{artifact(models['int8']).sha256}.tflite").read_bytes() == models["int8"].read_bytes()
    timings = second.timings
    # what the summary entry stores: the runner's keys, the host's, the latency (keys as before records)
    assert set(timings.to_json()) == {"load_s", "prepare_s", "invoke_s", "per_batch_s", "total_s", "host_push_s",
                                      "host_run_s", "host_pull_s", "latency_ms_per_sample"}
    assert timings.latency_ms_per_sample > 0


def test_only_the_runners_manifest_is_pushed_and_nothing_planted_beside_it_runs(models, test_set, tmp_path):
    from device_runner import RUNNER_FILES

    target = LocalTarget(tmp_path / "device")
    assert run_job(target, artifact(models["fp32"]), test_set, "reference").ok
    (runner_dir,) = (Path(target.workdir) / "runner").glob("*/device_runner")
    assert sorted(p.name for p in runner_dir.iterdir()) == sorted(RUNNER_FILES)  # no __pycache__ (-B)
    marker = tmp_path / "planted-code-ran"
    for planted in ("numpy.py", "protocol.py.bak", ".hidden.py"):  # numpy.py would shadow numpy
        (runner_dir / planted).write_text(f"open({str(marker)!r}, 'w').close()\n")
    (runner_dir / "__pycache__").mkdir()
    (runner_dir / "__pycache__" / "protocol.cpython-311.pyc").write_bytes(b"planted")
    again = run_job(target, artifact(models["fp32"]), test_set, "reference")  # the served runner: loaded
    assert again.ok, again.error
    assert not marker.exists()
    fresh = LocalTarget(tmp_path / "device")  # a new session starts a runner: the folder is pruned first
    assert run_job(fresh, artifact(models["fp32"]), test_set, "reference").ok
    fresh.close()
    assert not marker.exists()
    assert sorted(p.name for p in runner_dir.iterdir()) == sorted(RUNNER_FILES)


def test_a_changed_device_copy_is_pushed_again(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    run_job(target, artifact(models["fp32"]), test_set)
    cached = Path(target.workdir) / "cache" / f"{artifact(models['fp32']).sha256}.tflite"
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    cached.write_bytes(bytes(data))
    again = run_job(target, artifact(models["fp32"]), test_set)
    assert again.ok and again.transfer.pushed["model"] == len(data)
    assert cached.read_bytes() == models["fp32"].read_bytes()


def test_a_hostile_workdir_name_works_and_executes_nothing(models, test_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = LocalTarget(tmp_path / HOSTILE_NAME)
    run = run_job(target, artifact(models["fp32"]), test_set, "reference")
    assert run.ok, run.error
    assert run.logits.shape == (N_SAMPLES, tiny.NUM_CLASSES)
    assert not any((tmp_path / n).exists() for n in ("pwned", "pwned2", "pwned3"))


def test_failed_conversion_pushes_nothing(test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    failed = ModelArtifact(variant="int16x8", path=None, sha256=None, size_bytes=0, inputs=(), outputs=(),
                           recipe={}, error="converter said no")
    run = run_job(target, failed, test_set)
    assert not run.ok and run.error == "converter said no" and run.logits is None
    assert not os.path.exists(target.workdir)


def test_a_model_that_cannot_load_is_the_jobs_error(test_set, tmp_path, models):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(models["fp32"].read_bytes()[:500])
    run = run_job(LocalTarget(tmp_path / "device"), artifact(broken, "fp32"), test_set)
    assert not run.ok and run.logits is None
    assert run.error.startswith("model_load: ") and artifact(broken).sha256 in run.error  # the device copy
    assert "Flatbuffer" in run.error  # the runtime's own words
    assert run.runtime == "ai_edge_litert"


def test_a_model_with_other_classes_is_the_jobs_error(models, test_set, tmp_path):
    five = GroupedDataset(name="five", ids=test_set.ids, x=test_set.x, y=test_set.y % 5, group=test_set.group,
                          split=test_set.split, num_classes=5, preprocess=test_set.preprocess)
    run = run_job(LocalTarget(tmp_path / "device"), artifact(models["fp32"]), five)
    assert not run.ok and "10 values per sample" in run.error and "5 classes" in run.error


def test_unknown_options_are_config_errors(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    with pytest.raises(ConfigError, match="hexagonal"):
        run_job(target, artifact(models["fp32"]), test_set, "hexagonal")
    with pytest.raises(ConfigError, match="onnx"):
        run_job(target, artifact(models["fp32"]), test_set, runtime="onnx")


def _stand_in_python(tmp_path: Path, body: str) -> str:
    """An executable that the target runs in place of python (a device without a real runner)."""
    script = tmp_path / "stand-in-python"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_no_handshake_is_a_runner_error_with_the_output(models, test_set, tmp_path):
    python = _stand_in_python(tmp_path, "print('Segmentation fault (core dumped)')")
    with pytest.raises(RunnerError, match="no handshake") as err:
        run_job(LocalTarget(tmp_path / "device", python=python), artifact(models["fp32"]), test_set)
    assert "Segmentation fault" in err.value.output and "Segmentation fault" in str(err.value)


def test_another_major_protocol_is_refused(models, test_set, tmp_path):
    python = _stand_in_python(tmp_path, "print('QSKEW-RUNNER protocol=2.0 python=3.13.0 numpy=3.0')")
    with pytest.raises(ProtocolMismatch, match="2.0"):
        run_job(LocalTarget(tmp_path / "device", python=python), artifact(models["fp32"]), test_set)


def test_a_runner_that_dies_without_a_result_is_a_runner_error(models, test_set, tmp_path):
    python = _stand_in_python(tmp_path, "print('QSKEW-RUNNER protocol=1.0 python=3 numpy=2'); "
                                        "import sys; sys.exit(-9)")
    with pytest.raises(RunnerError, match="without writing"):
        run_job(LocalTarget(tmp_path / "device", python=python), artifact(models["fp32"]), test_set)


def test_a_hung_runner_times_out(models, test_set, tmp_path):
    python = _stand_in_python(tmp_path, "import time; time.sleep(60)")
    with pytest.raises(CommandTimeout):
        run_job(LocalTarget(tmp_path / "device", python=python), artifact(models["fp32"]), test_set,
                timeout_s=1.0)


def test_result_json_is_parsed_into_the_records_once(test_set, tmp_path):
    """build_run turns result.json's timings and execution plan into records; the stored timings
    are the runner's plus the host's and the latency, as the untyped dict had them."""
    from harness.on_device import Transfer
    from harness.runners.python import _RunnerOutcome, build_run

    raw = np.zeros((len(test_set), tiny.NUM_CLASSES), np.float32)
    plan = {"available": True, "source": "interpreter", "nodes": 1, "delegated_nodes": 1, "delegate_partitions": 1,
            "ops": ["CONV_2D"], "cpu_ops": [], "placement": [{"node": 0, "op": "CONV_2D", "on": "delegate"}]}
    result = {"status": "ok", "runtime": "ai_edge_litert", "runtime_version": "2.3.0", "delegate_applied": "xnnpack",
              "batch_size": 64, "execution_plan": plan,
              "output": {"file": "outputs.npy", "dtype": "float32", "scale": 0.0, "zero_point": 0},
              "timings": {"invoke_s": 0.02, "load_s": 0.01, "per_batch_s": [0.006, 0.006, 0.003], "prepare_s": 0.001,
                          "total_s": 0.04}}
    transfer = Transfer(pushed={"job": 9}, bytes_pulled=4, push_s=0.1234567, pull_s=0.05)
    run = build_run(LocalTarget(tmp_path / "device"), artifact_of(b"m"), test_set, "xnnpack",
                    _RunnerOutcome(result, raw, ""), transfer, 0.7)
    assert run.ok and run.execution_plan.to_json() == plan
    assert run.timings.to_json() == {**result["timings"], "host_push_s": 0.123457, "host_run_s": 0.7,
                                     "host_pull_s": 0.05, "latency_ms_per_sample": 1000.0 * 0.015 / len(test_set)}
    assert run.transfer.to_json() == {"bytes_pushed": 9, "bytes_pulled": 4, "push_s": 0.123457, "run_s": 0.0,
                                      "pull_s": 0.05, "pushed": {"job": 9}}
    failed = build_run(LocalTarget(tmp_path / "device"), artifact_of(b"m"), test_set, "xnnpack",
                       _RunnerOutcome({**result, "status": "error", "error_kind": "invoke", "error": "boom"}, None, ""),
                       transfer, 0.7)
    assert failed.error == "invoke: boom" and failed.timings.latency_ms_per_sample is None


def artifact_of(data: bytes) -> ModelArtifact:
    return ModelArtifact(variant="v", path=None, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                         inputs=(), outputs=(), recipe={})


def test_properties_come_from_the_target(models, test_set, tmp_path):
    run = run_job(LocalTarget(tmp_path / "device", name="bench-7"), artifact(models["int8"]), test_set)
    assert run.target == "bench-7" and run.target_properties["name"] == "bench-7"
    assert run.execution_plan.delegated_nodes > 0


def test_one_served_runner_gives_the_bits_of_a_runner_per_job(models, test_set, tmp_path, monkeypatch):
    """The local target keeps one runner up for its session (run.py --serve); every job's outputs
    are bit-identical to a runner started for that job alone, whatever ran before it."""
    jobs = [(v, d) for v in ("fp32", "int8") for d in ("xnnpack", "reference", "builtin")]
    served_target = LocalTarget(tmp_path / "served")
    served = [run_job(served_target, artifact(models[v], v), test_set, d) for v, d in jobs]
    assert len(served_target._served) == 1
    (process,) = served_target._served.values()
    assert process.alive
    monkeypatch.setattr(python_runner, "SERVED_RUNNER", False)
    per_job_target = LocalTarget(tmp_path / "per-job")
    for (v, d), run in zip(jobs, served):
        alone = run_job(per_job_target, artifact(models[v], v), test_set, d)
        assert run.ok and alone.ok, (run.error, alone.error)
        assert run.raw.dtype == alone.raw.dtype and run.raw.tobytes() == alone.raw.tobytes(), (v, d)
        assert run.delegate_applied == alone.delegate_applied
    assert per_job_target._served == {}
    served_target.close()
    assert not process.alive


def test_a_served_runner_that_dies_is_replaced(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    assert run_job(target, artifact(models["fp32"]), test_set).ok
    (process,) = target._served.values()
    process._proc.kill()
    process._proc.wait()
    again = run_job(target, artifact(models["fp32"]), test_set)
    assert again.ok and target._served[process.argv] is not process


def test_device_copies_are_hashed_once_per_session(models, test_set, tmp_path, monkeypatch):
    target = LocalTarget(tmp_path / "device")
    run_job(target, artifact(models["int8"]), test_set)
    hashed = []
    real = LocalTarget.sha256
    monkeypatch.setattr(LocalTarget, "sha256", lambda self, remote: hashed.append(remote) or real(self, remote))
    assert run_job(target, artifact(models["int8"]), test_set).ok
    assert not [r for r in hashed if "/cache/" in r or "/runner/" in r]  # the job's own pulls still verify
    run_job(LocalTarget(tmp_path / "device"), artifact(models["int8"]), test_set)  # a new session
    assert [r for r in hashed if r.endswith(".npy") and "/cache/" in r]


# --- over ADB: the simulated device speaks the real protocol; same runner, runtime and delegate ---

def adb_on(sim, name: str = "sim-phone", **options):
    from harness.targets.adb import AdbTarget
    from support.adb_sim import session_key

    options.setdefault("key_path", session_key())
    host, port = sim.address
    return AdbTarget(name, address=f"{host}:{port}", workdir="/data/local/tmp/qskew", **options)


def _job_started(sim) -> bool:
    return any((sim.root / "data/local/tmp/qskew/jobs").glob("*/.qskew-job.stdout"))




@pytest.mark.parametrize("variant,delegate", [("int8", "xnnpack"), ("fp32", "reference")])
def test_a_run_over_adb_is_bit_identical_to_the_local_target(variant, delegate, models, test_set,
                                                             simulated, tmp_path):
    art = artifact(models[variant], variant)
    local = run_job(LocalTarget(tmp_path / "local"), art, test_set, delegate)
    with adb_on(simulated()) as phone:
        remote = run_job(phone, art, test_set, delegate)
    assert local.ok and remote.ok, (local.error, remote.error)
    assert np.array_equal(remote.raw, local.raw) and remote.raw.dtype == local.raw.dtype
    assert np.array_equal(remote.logits, local.logits)
    assert (remote.runtime, remote.runtime_version, remote.delegate_applied) == \
        (local.runtime, local.runtime_version, local.delegate_applied)
    assert remote.target == "sim-phone" and remote.target_properties["kind"] == "adb"
    assert remote.target_properties["python_version"]
    transfer = remote.transfer
    assert transfer.pushed["model"] == models[variant].stat().st_size
    assert transfer.pushed["inputs"] == local.transfer.pushed["inputs"] > test_set.x.nbytes
    assert transfer.bytes_pulled > remote.raw.nbytes and local.transfer.bytes_pulled > local.raw.nbytes
    assert transfer.run_s > 0 and transfer.push_s > 0 and transfer.pull_s > 0


def test_a_sweep_on_one_simulated_device_pushes_the_test_set_once(models, test_set, simulated):
    variants = ("fp32", "int8", "int16x8")
    with adb_on(simulated()) as phone:
        runs = [run_job(phone, artifact(models[v], v), test_set, d)
                for v in variants for d in ("xnnpack", "reference")]
    assert all(r.ok for r in runs), [r.error for r in runs]
    pushed = {kind: sum(r.transfer.pushed[kind] for r in runs) for kind in ("inputs", "model", "runner")}
    assert pushed["inputs"] == runs[0].transfer.pushed["inputs"] > test_set.x.nbytes
    assert pushed["model"] == sum(models[v].stat().st_size for v in variants)
    assert pushed["runner"] == runs[0].transfer.pushed["runner"] > 0
    assert all(r.transfer.pushed["inputs"] == 0 for r in runs[1:])


def test_a_legacy_device_without_shell_v2_runs_the_job(models, test_set, simulated, tmp_path):
    art = artifact(models["int8"], "int8")
    with adb_on(simulated(features=(), max_payload=4096)) as phone:
        remote = run_job(phone, art, test_set)
        assert phone.features == frozenset() and phone.max_payload == 4096
    assert remote.ok, remote.error
    assert np.array_equal(remote.raw, run_job(LocalTarget(tmp_path / "local"), art, test_set).raw)


def test_a_job_outlives_a_dropped_connection_and_is_polled_again(models, test_set, simulated, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(python_runner, "SERVED_RUNNER", False)  # a runner per job, detached and polled
    sim = simulated()
    art = artifact(models["fp32"], "fp32")
    dropper = when(lambda: _job_started(sim), sim.drop_connections)
    with adb_on(sim) as phone:
        remote = run_job(phone, art, test_set, "reference")
        reconnects = phone.reconnects
    dropper.join()
    assert remote.ok and reconnects >= 1
    assert np.array_equal(remote.raw, run_job(LocalTarget(tmp_path / "local"), art, test_set, "reference").raw)


def test_a_runner_that_crashes_over_adb_is_a_runner_error(models, test_set, simulated):
    with adb_on(simulated(), python="false") as phone:
        with pytest.raises(RunnerError, match="no handshake") as err:
            run_job(phone, artifact(models["fp32"]), test_set)
    assert err.value.device == "sim-phone"


def test_a_job_the_runner_cannot_run_over_adb_is_a_runner_error(models, test_set, simulated):
    pytest.importorskip("numpy")
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite_runtime is importable here")
    except ImportError:
        pass
    with adb_on(simulated()) as phone:
        with pytest.raises(RunnerError, match="could not run job") as err:
            run_job(phone, artifact(models["fp32"]), test_set, runtime="tflite_runtime")
    assert err.value.device == "sim-phone" and "tflite_runtime" in str(err.value)


@pytest.mark.parametrize("stage,nbytes", [("push", 4096), ("pull", 1)])
def test_a_device_vanishing_mid_transfer_names_the_device(stage, nbytes, models, test_set, simulated):
    sim = simulated()
    sim.vanish_after(stage, nbytes)
    with adb_on(sim, name="flaky-phone", reconnect_attempts=2) as phone:
        with pytest.raises(TargetError) as err:
            run_job(phone, artifact(models["fp32"]), test_set)
    assert err.value.device == "flaky-phone" and "gone" in str(err.value)
    assert stage in str(err.value)


def test_a_device_vanishing_mid_run_names_the_device_and_the_runner(models, test_set, simulated, monkeypatch):
    monkeypatch.setattr(python_runner, "SERVED_RUNNER", False)  # a runner per job, detached and polled
    sim = simulated()
    # vanish_after("run") waits for a shell command that is still running after 0.5 s; the runner's
    # start command returns at once (the job is detached), so the test pulls the plug itself.
    when(lambda: _job_started(sim), sim.vanish)
    with adb_on(sim, name="flaky-phone", reconnect_attempts=2) as phone:
        with pytest.raises(TargetError, match="gone") as err:
            run_job(phone, artifact(models["fp32"]), test_set)
    assert err.value.device == "flaky-phone" and "run.py" in str(err.value)


def test_a_full_device_disk_names_the_device(models, test_set, simulated):
    with adb_on(simulated(disk_quota_bytes=20_000), name="full-phone") as phone:
        with pytest.raises(TargetError, match="No space left on device") as err:
            run_job(phone, artifact(models["fp32"]), test_set)
    assert err.value.device == "full-phone" and "qskew" in str(err.value)


def test_a_pulled_output_that_does_not_match_the_runners_hash_is_refused(models, test_set, tmp_path):
    python = _stand_in_python(tmp_path, f"""
import json, os, sys
import numpy as np
print('QSKEW-RUNNER protocol=1.0 python=3 numpy=2')
job = sys.argv[-1]  # python -B run.py <job dir>
np.save(os.path.join(job, 'outputs.npy'), np.zeros(({N_SAMPLES}, 10), np.float32), allow_pickle=False)
out = {{'file': 'outputs.npy', 'dtype': 'float32', 'shape': [{N_SAMPLES}, 10], 'scale': 0.0,
        'zero_point': 0, 'sha256': '0' * 64}}
with open(os.path.join(job, 'result.json'), 'w') as f:
    json.dump({{'protocol': '1.0', 'status': 'ok', 'output': out}}, f)
""")
    with pytest.raises(TargetError, match="the runner recorded 0000"):
        run_job(LocalTarget(tmp_path / "device", python=python), artifact(models["fp32"]), test_set)


def test_the_progress_of_a_running_job_reaches_the_caller_over_adb(models, test_set, simulated, tmp_path):
    sim = simulated()
    slow = sim.root / "system" / "bin" / "slow-python"  # a device interpreter that reports progress, then pauses
    slow.write_text(f'#!/bin/sh\necho "QSKEW-PROGRESS 7 {N_SAMPLES}"\nsleep 1\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    seen = []
    with adb_on(sim, python="/system/bin/slow-python") as phone:
        run = run_job(phone, artifact(models["fp32"], "fp32"), test_set, "xnnpack",
                      progress=lambda done, total: seen.append((done, total)))
    assert run.ok, run.error
    assert (7, N_SAMPLES) in seen
