"""harness/runners/benchmark_model.py: whole jobs on a LocalTarget with the stand-in (and an executable
"binary" built from it), the real runtime and tiny real models."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import on_device
from harness.runners import benchmark_model as bm
from harness.runners import python as py_runner
from harness.runners.benchmark_model_log import FAILED_MARK, split_log
from harness.runners.common import Batch, split_outputs
from harness.errors import RunnerError
from harness.records import ModelArtifact
from harness.targets.local import LocalTarget

BATCH = 64
N_SAMPLES = 150  # the test_set fixture: 64 + 64 + 22


def artifact(path: Path, variant: str = "v") -> ModelArtifact:
    data = Path(path).read_bytes()
    return ModelArtifact(variant=variant, path=Path(path), sha256=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data), inputs=(), outputs=(), recipe={})


def bm_run(target, model, test, delegate, binary="standin", **kw):
    return bm.run_job(target, artifact(model), test, delegate, binary=binary, num_threads=2,
                      batch_size=BATCH, **kw)


def py_run(target, model, test, delegate, **kw):
    return py_runner.run_job(target, artifact(model), test, delegate, num_threads=2, batch_size=BATCH, **kw)


def device_log(target) -> str:
    logs = sorted(Path(target.workdir, "jobs").glob(f"*/{bm.LOG_FILE}"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text()


@pytest.mark.parametrize("delegate", ["xnnpack", "builtin"])
@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_logits_are_identical_to_the_python_runner(variant, delegate, models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    run = bm_run(target, models[variant], test_set, delegate)
    assert run.ok, run.error
    ref = py_run(target, models[variant], test_set, delegate)
    assert np.array_equal(run.logits, ref.logits) and run.raw.dtype == ref.raw.dtype
    assert run.batch_size == BATCH and run.timings.invocations == 3  # 64 + 64 + 22
    shapes = [line for line in device_log(target).splitlines() if "Input shapes:" in line]
    assert shapes == ["INFO: Input shapes: [64,8,8,1]"] * 2 + ["INFO: Input shapes: [22,8,8,1]"]
    assert run.runtime == "benchmark_model" and run.runtime_version.startswith("stand-in on ai_edge_litert")
    assert run.delegate_applied == ref.delegate_applied == ("xnnpack" if delegate == "xnnpack" else "none")
    assert run.execution_plan.source == "benchmark_model log"
    assert len(run.timings.per_batch_s) == 3 and run.timings.latency_ms_per_sample > 0


def test_a_fixed_batch_model_pads_its_last_batch(models, small_set, tmp_path):
    test = small_set(10)
    target = LocalTarget(tmp_path / "device")
    run = bm_run(target, models["fixed4"], test, "xnnpack")
    ref = py_run(target, models["fixed4"], test, "xnnpack")
    assert run.ok and np.array_equal(run.logits, ref.logits) and run.logits.shape == (10, 10)
    assert run.batch_size == 4 and run.timings.invocations == 3  # 4 + 4 + (2 + 2 padding)
    assert run.execution_plan.fully_delegated is True and run.execution_plan.delegate_partitions == 1


def test_several_int8_outputs_are_split_and_output_0_dequantized(two_output_model, test_set, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    target = LocalTarget(tmp_path / "device")
    run = bm_run(target, two_output_model, test_set, "builtin")
    assert run.ok, run.error
    interp = Interpreter(model_path=str(two_output_model), num_threads=2,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tin, outs = interp.get_input_details()[0], interp.get_output_details()
    plan = bm.plan_job(two_output_model, test_set, BATCH)
    expected = [[] for _ in outs]
    for b in plan.batches:
        interp.resize_tensor_input(tin["index"], [b.count, 8, 8, 1])
        interp.allocate_tensors()
        interp.set_tensor(tin["index"], np.fromfile(b.path, dtype=np.int8).reshape(b.count, 8, 8, 1))
        interp.invoke()
        for k, o in enumerate(outs):
            expected[k].append(interp.get_tensor(o["index"]))
    expected = [np.concatenate(e) for e in expected]
    job_outputs = next(Path(target.workdir, "jobs").glob(f"*/{bm.OUTPUTS_FILE}")).read_bytes()
    got = split_outputs(job_outputs, plan.outputs, plan.dynamic, plan.batches)
    assert [g.dtype for g in got] == [np.int8, np.int8] and [g.shape[1] for g in got] == [10, 3]
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))
    scale, zero_point = outs[0]["quantization"]
    assert scale > 0 and np.array_equal(run.raw, expected[0])
    assert np.array_equal(run.logits, (expected[0].astype(np.float32) - zero_point) * np.float32(scale))


def test_a_failing_batch_is_the_jobs_error_not_a_crash(models, test_set, tmp_path):
    # a "binary" that fails as the real one does when a delegate's prepare fails (exit 1)
    binary = tmp_path / "host-bin" / "benchmark_model"
    binary.parent.mkdir()
    binary.write_text('#!/bin/sh\necho "INFO: STARTING!"\necho "ERROR: Failed to apply GPU delegate." >&2\n'
                      'echo "ERROR: Benchmarking failed." >&2\nexit 1\n')
    target = LocalTarget(tmp_path / "device", name="phone-1")
    run = bm_run(target, models["int8"], test_set, "gpu", binary=str(binary))
    assert not run.ok and run.logits is None
    assert run.error.startswith("delegate: benchmark_model exited 1 on batch 0 (samples 0..63) on device phone-1")
    assert "Failed to apply GPU delegate." in run.error
    first = run.error.splitlines()[0]  # the binary's ERROR lines lead, before the log
    assert first.split("on device phone-1: ")[1].startswith("ERROR:")
    assert run.timings.invocations == 1  # stopped at the first failing batch


def test_the_script_stops_at_the_first_failing_batch_with_its_status(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    plan = bm.plan_job(models["int8"], test_set, BATCH)
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(models["int8"], cache / "m.tflite")
    for b in plan.batches:
        shutil.copy(b.path, cache / f"{b.sha256}.raw")
    os.remove(cache / f"{plan.batches[1].sha256}.raw")  # batch 1's value file is missing
    job = tmp_path / "job"
    job.mkdir()
    prefix = [sys.executable, str(bm.STANDIN_FILE)]
    invocations = [(b, bm.batch_argv(prefix, "m.tflite", plan, b, ("--use_xnnpack=false",), 1,
                                      str(job / bm.OUT_DIR / f"{b.index}.bin"))) for b in plan.batches]
    (job / "run.sh").write_text(bm.build_script(str(cache), str(job), invocations, len(test_set)))
    proc = target.run(["sh", str(job / "run.sh")], timeout_s=60)
    assert proc.returncode == 134  # the stand-in's FATAL, as the binary's abort() shows in a shell
    assert proc.stdout.split() == ["QSKEW-PROGRESS", "64", str(N_SAMPLES), FAILED_MARK, "1", "134"]
    sections = split_log((job / bm.LOG_FILE).read_text())
    assert [(i, rc) for i, rc, _ in sections] == [(0, 0), (1, 134)]
    assert "FATAL: Failed to read the input_layer_value_file" in sections[1][2]
    assert (job / bm.OUTPUTS_FILE).stat().st_size == 64 * 10  # batch 0's int8 [64, 10] only


def test_reference_kernels_are_refused_before_anything_is_pushed(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device")
    run = bm_run(target, models["int8"], test_set, "reference")
    assert run.error.startswith("delegate: benchmark_model cannot select TFLite's reference kernels")
    assert "`builtin`" in run.error and not (tmp_path / "device").exists()


def test_files_are_pushed_once_and_a_binary_is_run_directly(models, test_set, tmp_path):
    # an executable made of the stand-in: the code path of a real binary (pushed, chmod 755, run as is)
    binary = tmp_path / "host-bin" / "benchmark_model"
    binary.parent.mkdir()
    binary.write_text(f"#!{sys.executable}\n" + bm.STANDIN_FILE.read_text())
    binary.chmod(0o644)
    target = LocalTarget(tmp_path / "device")
    first = bm_run(target, models["int8"], test_set, "xnnpack", binary=str(binary))
    assert first.ok, first.error
    pushed = first.transfer.pushed
    assert pushed["runner"] == binary.stat().st_size and pushed["model"] > 0 and pushed["inputs"] == N_SAMPLES * 64
    remote = next(Path(target.workdir, "cache").glob("*-benchmark_model"))
    assert stat.S_IMODE(remote.stat().st_mode) == 0o755
    again = bm_run(target, models["int8"], test_set, "builtin", binary=str(binary))
    assert {k: again.transfer.pushed[k] for k in ("runner", "model", "inputs")} == \
        {"runner": 0, "model": 0, "inputs": 0}
    assert np.array_equal(first.logits, bm_run(target, models["int8"], test_set, "xnnpack").logits)


def test_a_binary_that_writes_no_output_file_is_a_runner_error(models, test_set, tmp_path):
    # /bin/true takes any flags and exits 0: what a binary without --output_filepath looks like
    target = LocalTarget(tmp_path / "device")
    with pytest.raises(RunnerError, match="exited 0 but wrote no out/0.bin"):
        bm_run(target, models["int8"], test_set, "xnnpack", binary=shutil.which("true"))


def test_an_output_of_the_wrong_size_names_the_device_and_the_file(models, test_set, tmp_path):
    target = LocalTarget(tmp_path / "device", name="phone-2")
    plan = bm.plan_job(models["int8"], test_set, BATCH)
    outcome = bm._Outcome(log="", data=b"\0" * 7, failed=None, outputs_remote="/data/x/outputs.bin", output="")
    run = bm.build_run(target, artifact(models["int8"]), test_set, "xnnpack", plan, outcome,
                       on_device.Transfer())
    assert run.error == ("output: benchmark_model on device phone-2 wrote /data/x/outputs.bin with 7 bytes, "
                         "but the model's 1 output(s) take 1500 bytes for 3 batch(es)")


def test_hostile_work_folder_and_model_path(models, test_set, hostile_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = tmp_path / hostile_name
    hostile.mkdir()
    model = hostile / f"{hostile_name}.tflite"
    shutil.copy(models["int8"], model)
    target = LocalTarget(hostile / "device")
    run = bm_run(target, model, test_set, "xnnpack")
    assert run.ok, run.error
    assert np.array_equal(run.logits, py_run(LocalTarget(tmp_path / "plain"), models["int8"], test_set, "xnnpack").logits)
    assert not [p for p in tmp_path.rglob("pwned*")] and not Path("pwned").exists()


def test_every_argument_reaches_the_binary_unchanged(hostile_name, tmp_path):
    """The script's quoting: a program that records its argv stands in for the binary."""
    record = ("import json, sys\n"
              "out = [a for a in sys.argv[1:] if a.startswith('--output_filepath=')][0].split('=', 1)[1]\n"
              "open(out, 'wb').write(b'x')\n"
              "print(json.dumps(sys.argv[1:]))\n")
    job = tmp_path / hostile_name / "job"
    job.mkdir(parents=True)
    args = [hostile_name, "--input_layer=a b;$(touch pwned)", "--x='\"`touch pwned`\"'", "--y=\\n*?[a]", "--z=-n"]
    b = Batch(0, 0, 1, 1, "0" * 64, None)
    argv = [sys.executable, "-c", record, *args, f"--output_filepath={job / 'out' / '0.bin'}"]
    script = bm.build_script(str(tmp_path / hostile_name), str(job), [(b, argv)], 1)
    proc = LocalTarget(tmp_path / "device").run(["sh", "-c", script], timeout_s=30, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (_, _, text), = split_log((job / bm.LOG_FILE).read_text())
    assert json.loads(text) == args + [f"--output_filepath={job / 'out' / '0.bin'}"]
    assert (job / bm.OUTPUTS_FILE).read_bytes() == b"x" and not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("delegate, warning", [
    ("gpu", "GPU acceleration is unsupported on this platform."),
    ("gpu-fp32", "GPU acceleration is unsupported on this platform."),
    ("nnapi", "NNAPI acceleration is unsupported on this platform.")])
def test_a_delegate_the_binary_silently_skips_fails_the_job_not_records_cpu_logits(
        delegate, warning, models, test_set, tmp_path):
    """The stand-in plays the real binary without the delegate: WARN, CPU run, exit 0."""
    target = LocalTarget(tmp_path / "device", name="phone-1")
    run = bm_run(target, models["fp32"], test_set, delegate)
    assert not run.ok and run.logits is None
    assert run.error.startswith("delegate: benchmark_model did not apply the ")
    assert warning in run.error and run.error.endswith("(on device phone-1)")
    script = next(Path(target.workdir, "jobs").glob(f"*/{bm.SCRIPT_FILE}")).read_text()
    assert "--use_xnnpack=false" in script and "--warmup_runs=1" in script
    if delegate.startswith("gpu"):
        allowed = "true" if delegate == "gpu" else "false"
        assert f"--gpu_precision_loss_allowed={allowed}" in script
        assert run.execution_plan.precision.requested == ("fp16" if delegate == "gpu" else "fp32")


def test_an_external_delegate_that_will_not_load_fails_the_job_at_stage_delegate(models, test_set, tmp_path):
    """The stand-in does what the binary does (INFO line, CPU run, exit 0); the runner's check catches it."""
    target = LocalTarget(tmp_path / "device", name="phone-1")
    run = bm_run(target, models["int8"], test_set, "external:/nonexistent/libdelegate.so,mode=fast")
    assert not run.ok and run.logits is None
    assert run.error.startswith("delegate: benchmark_model did not apply the EXTERNAL delegate in invocation 0")
    assert "INFO: Unable to load external delegate from : /nonexistent/libdelegate.so" in run.error
    assert "Inference timings in us" in device_log(target)  # the binary did run it, on the CPU
    assert run.delegate_applied == "none"


OLD_BINARY = """#!/bin/sh
# a benchmark_model from before TF 2.10: it knows no --output_filepath, warns, runs and exits 0
echo "INFO: STARTING!"
for a in "$@"; do case "$a" in --output_filepath=*) echo "WARN: Unconsumed cmdline flags: $a";; esac; done
echo "INFO: Inference timings in us: Init: 10, First inference: 5, Warmup (avg): 5, Inference (avg): 5"
exit 0
"""


def test_a_binary_too_old_to_write_outputs_is_refused_with_the_reason(models, test_set, tmp_path):
    binary = tmp_path / "host-bin" / "benchmark_model"
    binary.parent.mkdir()
    binary.write_text(OLD_BINARY)
    target = LocalTarget(tmp_path / "device", name="phone-old")
    with pytest.raises(RunnerError, match=r"too old to write outputs .*Unconsumed cmdline flags.*TF 2\.10") as err:
        bm_run(target, models["int8"], test_set, "xnnpack", binary=str(binary))
    assert "phone-old" in str(err.value)
