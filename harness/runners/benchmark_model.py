"""The ``benchmark_model`` runner kind: TFLite's own ``benchmark_model`` binary runs a job on a device
that has no Python (most phones), one invocation per batch.

Layout below the target's ``workdir`` (content-addressed like :mod:`harness.on_device`'s, and
sharing its model cache)::

    cache/<sha256>-benchmark_model              the binary for the device's ABI (chmod 755), or
    cache/<sha256>-benchmark_model_standin.py   qskew's stand-in for it, run with the device's python
    cache/<sha256>.tflite                       models
    cache/<sha256>.raw                          one batch of inputs: the input tensor's raw bytes
    jobs/<job id>/run.sh                        the job: a POSIX sh script, one invocation per batch
    jobs/<job id>/out/<i>.bin                   batch i's outputs as the binary wrote them
    jobs/<job id>/outputs.bin                   every batch's outputs, concatenated in batch order
    jobs/<job id>/benchmark.log                 every invocation's output between batch markers

Each batch is converted to the model's input dtype exactly as the Python runner converts it
(``device_runner.run.to_model_input``) and written as the raw bytes the input tensor holds (the
binary refuses a file whose size is not the tensor's ``bytes``). Batches are as large as the model
allows: ``batch_size`` samples for a dynamic batch dimension, the model's own batch otherwise (the
last batch padded, the padding's outputs dropped). The binary runs once per batch: one warm-up
on the same input, one timed run (``--num_runs=1 --min_secs=0 --warmup_runs=1 --warmup_min_secs=0``) and writes
every output tensor, concatenated and headerless, to ``--output_filepath``; the host splits that
with the output dtypes and shapes read from the model on the host, and dequantizes output 0
(:mod:`harness.runners.common`). The binary's flags and log are read in
:mod:`harness.runners.benchmark_model_log`.

Failures are sorted as in :mod:`harness.runners.python`: the binary failing on a batch is the
job's ``DeviceRun.error``, quoting the log; the device or the script failing (a push that does not
verify, no output file -- a binary before TF 2.10 is refused saying so --, a lost device) raises a
``TargetError``. No silent fallback: a binary that cannot create the GPU, NNAPI, Hexagon or an
external delegate warns, runs on the CPU and exits 0, so a job is its delegate's only when every
invocation logs "Explicitly applied <NAME> delegate", else it fails at stage ``delegate`` quoting
the warning. The binary prints no version: its sha256 is the runtime version.

Since no real binary runs in qskew's tests, ``binary = "standin"`` runs
``device_runner/benchmark_model_standin.py`` instead: the same flags on a TFLite Python runtime.

>>> run = run_job(target, artifact, test, "xnnpack", binary="bin/android_aarch64_benchmark_model")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import device_runner
from device_runner import protocol
from harness import on_device
from harness.errors import ArtifactError, ConfigError, QskewError, RunnerError, TargetError
from harness.fsutil import atomic_write_bytes
from harness.paths import cache_dir
from harness.records import DeviceRun, GroupedDataset, ModelArtifact, Precision, TensorIO
from harness.runners.benchmark_model_log import (BATCH_MARK, DONE_MARK, EXIT_MARK, FAILED_MARK,
                                                 SCRIPT_ERROR, UnsupportedDelegate, delegate_flags,
                                                 failed_batch, failure_stage, job_timings, parse_delegate_log,
                                                 precision_flag, runtime_version, split_log,
                                                 too_old_for_outputs, unconfirmed_delegate, why_failed)
from harness.runners.common import (Batch, choose_batch, class_count_problem, dequantize, failed_run,
                                    split_outputs)
from harness.runners import STANDIN_BINARY
from harness.targets.base import Target
from harness.text import tail

log = logging.getLogger(__name__)

STANDIN_FILE = Path(device_runner.__file__).resolve().parent / "benchmark_model_standin.py"
SCRIPT_FILE, LOG_FILE, OUTPUTS_FILE, OUT_DIR = "run.sh", "benchmark.log", "outputs.bin", "out"
SINGLE_RUN_FLAGS = ("--num_runs=1", "--min_secs=0", "--warmup_runs=1", "--warmup_min_secs=0")
CHMOD_TIMEOUT_S = 30.0           # one short command on a slow link
PER_INVOCATION_TIMEOUT_S = 15.0  # one process per batch: binary + model load + delegate set-up
JOB_ID_CHARS = 16                # as the Python runner's: unique among a device's jobs, short in paths
LOG_TAIL_CHARS = 1500            # a failing batch's log quoted in the job's error
RUNTIME = "benchmark_model"      # DeviceRun.runtime of this kind's jobs


class UnfitJob(QskewError):
    """The benchmark_model runner cannot drive this model with this test set (the job's error)."""


@dataclass(frozen=True)
class JobPlan:
    """What the host knows before anything is pushed: the model's I/O and the batches."""

    input: TensorIO
    outputs: tuple[TensorIO, ...]
    batch_size: int
    dynamic: bool
    batches: tuple[Batch, ...]


def run_job(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str, *,
            binary: str, num_threads: int = 2, batch_size: int = 64, timeout_s: float | None = None,
            progress: Callable[[int, int], None] | None = None) -> DeviceRun:
    """Run ``artifact`` on every sample of ``test`` with the benchmark_model ``binary`` on ``target``.

    ``binary`` is the host path of the binary for the device's ABI, or "standin". ``timeout_s``
    defaults to on_device's per-sample budget plus PER_INVOCATION_TIMEOUT_S per batch.
    Raises ConfigError for bad options, ArtifactError for an unusable model file, TargetError
    (RunnerError, CommandTimeout...) when the device or the job script fails.
    """
    if num_threads < 1 or batch_size < 1:
        raise ConfigError(f"num_threads ({num_threads}) and batch_size ({batch_size}) must be >= 1")
    if not artifact.ok:
        return failed_run(target, artifact, delegate, artifact.error or "unknown error", runtime=RUNTIME)
    try:
        flags = delegate_flags(delegate)
    except UnsupportedDelegate as exc:
        return failed_run(target, artifact, delegate, f"delegate: {exc}", runtime=RUNTIME)
    model_path = on_device.checked_model(artifact)
    try:
        plan = plan_job(model_path, test, batch_size)
    except UnfitJob as exc:
        return failed_run(target, artifact, delegate, str(exc), runtime=RUNTIME)
    transfer = on_device.Transfer()
    with tempfile.TemporaryDirectory(prefix="qskew-bm-") as tmp:
        start = time.perf_counter()
        command, job_dir = _push_all(target, artifact, model_path, plan, binary, flags, num_threads,
                                     Path(tmp), transfer)
        transfer.push_s = time.perf_counter() - start
        start = time.perf_counter()
        timeout = timeout_s if timeout_s is not None else (
            on_device.default_timeout_s(len(test)) + PER_INVOCATION_TIMEOUT_S * len(plan.batches))
        proc = target.run_detached(command, job_dir, timeout_s=timeout,
                                   watch=_watcher(progress) if progress is not None else None)
        transfer.run_s = time.perf_counter() - start
        start = time.perf_counter()
        outcome = _pull(target, job_dir, proc, Path(tmp), transfer)
        transfer.pull_s = time.perf_counter() - start
    binary_sha = None if binary == STANDIN_BINARY else on_device.sha256_file(Path(binary).expanduser())
    return build_run(target, artifact, test, delegate, plan, outcome, transfer, binary_sha256=binary_sha)


# ---- the plan: model I/O, batch size, input files ----------------------------------------------


def plan_job(model_path: Path, test: GroupedDataset, batch_size: int) -> JobPlan:
    """Read the model's I/O on the host and write the batches.

    Raises UnfitJob (the job's error, "model_load: ..." or "input: ...") when this runner cannot
    drive the model with this test set.
    """
    from device_runner.run import JobFailure
    from harness.quantize.inspect import read_io

    inputs, outputs = read_io(model_path)
    if len(inputs) != 1 or not outputs:
        raise UnfitJob(f"model_load: {model_path.name} has {len(inputs)} inputs and {len(outputs)} "
                       f"outputs; the benchmark_model runner drives models with one input")
    tin = inputs[0]
    if "," in tin.name:
        raise UnfitJob(f"input: input tensor name {tin.name!r} contains ',', which benchmark_model's "
                       f"--input_layer cannot carry (it splits names on ',')")
    if not tin.shape or list(test.x.shape[1:]) != list(tin.shape[1:]):
        raise UnfitJob(f"input: dataset {test.name!r} has sample shape {list(test.x.shape[1:])}; the "
                       f"model wants {list(tin.shape[1:])}")
    batch, dynamic = choose_batch(tin, batch_size, len(test))
    try:
        batches = write_batches(test, tin, batch, dynamic)
    except JobFailure as exc:  # the Python runner's conversion refuses (no quantization params)
        raise UnfitJob(f"input: {exc.message}") from exc
    return JobPlan(tin, tuple(outputs), batch, dynamic, tuple(batches))


def write_batches(test: GroupedDataset, tin: TensorIO, batch: int, dynamic: bool) -> list[Batch]:
    """One raw file per batch in the host cache, named by the sha256 of its bytes."""
    from device_runner.run import to_model_input

    info = {"dtype": tin.dtype, "scale": tin.scale, "zero_point": tin.zero_point}
    preprocess = test.preprocess.to_json()
    folder = cache_dir("benchmark_model-inputs")
    batches = []
    for i, start in enumerate(range(0, len(test), batch)):
        m = min(batch, len(test) - start)
        xb = to_model_input(test.x[start:start + m], preprocess, info)
        fed = m if dynamic else batch
        if fed != m:  # a fixed batch: pad, as the Python runner does (its outputs are dropped)
            xb = np.concatenate([xb, np.zeros((fed - m,) + xb.shape[1:], dtype=xb.dtype)])
        data = np.ascontiguousarray(xb).tobytes()
        expected = fed * int(np.prod(tin.shape[1:], dtype=np.int64)) * np.dtype(tin.dtype).itemsize
        if len(data) != expected:
            raise ArtifactError(f"batch {i} of {test.name!r} is {len(data)} bytes, not the input "
                                f"tensor's {expected}")
        sha = hashlib.sha256(data).hexdigest()
        path = folder / f"{sha}.raw"
        if not path.is_file() or path.stat().st_size != len(data):
            atomic_write_bytes(path, data)
        batches.append(Batch(i, start, m, fed, sha, path))
    return batches


# ---- pushing and the job script --------------------------------------------------------------


def push_binary(target: Target, binary: str, transfer: on_device.Transfer) -> str:
    """Push the binary (or the stand-in) to cache/ once per device and make it executable."""
    if binary == STANDIN_BINARY:
        local, suffix = STANDIN_FILE, "-benchmark_model_standin.py"
    else:
        local, suffix = Path(binary).expanduser(), "-benchmark_model"
        if not local.is_file():
            raise ConfigError(f"benchmark_model binary {local} does not exist (inventory key "
                              f"benchmark_model of device {target.name})")
    remote = on_device.push_file(target, local, on_device.sha256_file(local), "runner", suffix, transfer)
    st = target.stat(remote)
    if st is None or st.mode & 0o777 != 0o755:
        result = target.run(["chmod", "755", remote], timeout_s=CHMOD_TIMEOUT_S)
        if result.returncode != 0:
            raise TargetError(f"chmod 755 {remote} failed (exit {result.returncode}): "
                              f"{tail(result.stdout + result.stderr, LOG_TAIL_CHARS)}", target.name)
    return remote


def _push_all(target: Target, artifact: ModelArtifact, model_path: Path, plan: JobPlan, binary: str,
              flags: Sequence[str], num_threads: int, tmp: Path,
              transfer: on_device.Transfer) -> tuple[list[str], str]:
    """Push the binary, model, batches and job script; returns (command to run, job folder)."""
    tool = push_binary(target, binary, transfer)
    model = on_device.push_file(target, model_path, artifact.sha256, "model", ".tflite", transfer)
    for b in plan.batches:
        on_device.push_file(target, b.path, b.sha256, "inputs", ".raw", transfer)
    # the script runs in cache/: the model, the batches and the binary go by their bare hex names,
    # which survive benchmark_model's own splitting of flag values on ',' and ':'
    prefix = ([target.python] if binary == STANDIN_BINARY else []) + ["./" + posixpath.basename(tool)]
    key = [artifact.sha256, [b.sha256 for b in plan.batches], list(flags), num_threads,
           posixpath.basename(tool), "benchmark_model"]
    job_id = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:JOB_ID_CHARS]
    job_dir = posixpath.join(target.workdir, "jobs", job_id)
    invocations = [(b, batch_argv(prefix, posixpath.basename(model), plan, b, flags, num_threads,
                                  posixpath.join(job_dir, OUT_DIR, f"{b.index}.bin")))
                   for b in plan.batches]
    local = tmp / SCRIPT_FILE
    local.write_text(build_script(posixpath.dirname(model), job_dir, invocations,
                                  plan.batches[-1].start + plan.batches[-1].count))
    target.mkdirs(job_dir)
    remote = posixpath.join(job_dir, SCRIPT_FILE)
    target.push(local, remote)
    transfer.pushed["job"] = transfer.pushed.get("job", 0) + local.stat().st_size
    return ["sh", remote], job_dir


def batch_argv(prefix: Sequence[str], model: str, plan: JobPlan, b: Batch, flags: Sequence[str],
               num_threads: int, out_file: str) -> list[str]:
    """One invocation of the binary for batch ``b`` (``model`` relative to the script's folder)."""
    tin = plan.input
    shape = ",".join(str(d) for d in (b.fed,) + tuple(tin.shape[1:]))
    return [*prefix, f"--graph={model}", f"--input_layer={tin.name}", f"--input_layer_shape={shape}",
            f"--input_layer_value_files={tin.name.replace(':', '::')}:{b.sha256}.raw",
            f"--output_filepath={out_file}", *SINGLE_RUN_FLAGS, f"--num_threads={num_threads}", *flags]


def build_script(workdir: str, job_dir: str, invocations: Sequence[tuple[Batch, Sequence[str]]],
                 total: int) -> str:
    """A POSIX sh script: run each invocation in ``workdir``, log it, stop at the first failure.

    Each invocation's stdout+stderr goes to benchmark.log between "QSKEW-BATCH <i>" and
    "QSKEW-BATCH-EXIT <i> <status>"; its outputs are appended to outputs.bin and a progress line
    is printed. A failing invocation prints "QSKEW-BATCH-FAILED <i> <status>" and the script exits
    with that status; the script's own failures print QSKEW-SCRIPT-ERROR on stderr (exit 95/96).
    """
    q = shlex.quote
    log_file, out_dir, outputs = f'"$job/{LOG_FILE}"', f'"$job/{OUT_DIR}', f'"$job/{OUTPUTS_FILE}"'
    lines = [
        "#!/bin/sh",
        f"# qskew benchmark_model job: {len(invocations)} invocation(s), one per batch, {total} samples.",
        "# Written by harness/benchmark_model.py; every path and argument below is quoted.",
        f"job={q(job_dir)}",
        f'cd {q(workdir)} || {{ echo "{SCRIPT_ERROR} cannot enter the cache folder" >&2; exit 96; }}',
        f'rm -rf {out_dir}" && mkdir {out_dir}" && : >{outputs} && : >{log_file} '
        f'|| {{ echo "{SCRIPT_ERROR} cannot clear the job folder" >&2; exit 96; }}',
        "qskew_batch() {",
        "  i=$1; n_done=$2; shift 2",
        f'  echo "{BATCH_MARK} $i" >>{log_file}',
        f'  "$@" >>{log_file} 2>&1 </dev/null',
        "  rc=$?",
        f'  echo "{EXIT_MARK} $i $rc" >>{log_file}',
        f'  if [ "$rc" -ne 0 ]; then echo "{FAILED_MARK} $i $rc"; exit "$rc"; fi',
        f'  [ -f {out_dir}/$i.bin" ] || {{ echo "{SCRIPT_ERROR} batch $i: the binary exited 0 but '
        f'wrote no {OUT_DIR}/$i.bin (no --output_filepath support?)" >&2; exit 95; }}',
        f'  cat {out_dir}/$i.bin" >>{outputs} || {{ echo "{SCRIPT_ERROR} cannot append batch $i" >&2; exit 95; }}',
        f'  echo "{protocol.PROGRESS_PREFIX} $n_done {int(total)}"',
        "}",
    ]
    for b, argv in invocations:
        lines.append(" ".join(q(a) for a in ["qskew_batch", str(b.index), str(b.start + b.count), *argv]))
    lines.append(f'echo "{DONE_MARK} {len(invocations)}"')
    return "\n".join(lines) + "\n"


def _watcher(progress: Callable[[int, int], None]) -> Callable[[str], None]:
    def watch(line: str) -> None:
        done = protocol.parse_progress(line)
        if done is not None:
            progress(*done)
    return watch


# ---- pulling and the DeviceRun ---------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What came back: the log, the outputs (None when a batch failed), the failing batch."""

    log: str
    data: bytes | None
    failed: tuple[int, int] | None   # (batch index, exit status)
    outputs_remote: str
    output: str                      # the script's own stdout + stderr


def _pull(target: Target, job_dir: str, proc, tmp: Path, transfer: on_device.Transfer) -> _Outcome:
    """Pull benchmark.log (and outputs.bin when every batch ran), each checked by sha256."""
    output = proc.stdout + proc.stderr
    failed = failed_batch(proc.stdout)
    finished = proc.returncode == 0 and f"{DONE_MARK} " in proc.stdout
    if SCRIPT_ERROR in output or not (finished or (failed and proc.returncode == failed[1])):
        _refuse_old_binary(target, job_dir, tmp, transfer)
        err = RunnerError(f"benchmark_model job script {posixpath.join(job_dir, SCRIPT_FILE)} failed "
                          f"(exit {proc.returncode}): {tail(output, LOG_TAIL_CHARS)}", target.name)
        err.output = output
        raise err
    log_local = tmp / LOG_FILE
    on_device.pull_verified(target, posixpath.join(job_dir, LOG_FILE), log_local, None, transfer)
    outputs_remote = posixpath.join(job_dir, OUTPUTS_FILE)
    data = None
    if failed is None:
        local = tmp / OUTPUTS_FILE
        on_device.pull_verified(target, outputs_remote, local, None, transfer)
        data = local.read_bytes()
    return _Outcome(log_local.read_text(errors="replace"), data, failed, outputs_remote, output)


def _refuse_old_binary(target: Target, job_dir: str, tmp: Path, transfer: on_device.Transfer) -> None:
    """A binary that ignored --output_filepath (TF < 2.10) can never run a qskew job: say so."""
    local = tmp / LOG_FILE
    try:
        on_device.pull_verified(target, posixpath.join(job_dir, LOG_FILE), local, None, transfer)
    except TargetError:
        return  # no log to read: the script's own error is the message
    if too_old_for_outputs(local.read_text(errors="replace")):
        raise RunnerError("benchmark_model binary refused: it is too old to write outputs (it left "
                          "--output_filepath unconsumed, \"Unconsumed cmdline flags\"; the flag exists "
                          "since TF 2.10). Use a binary from TF >= 2.10 or a LiteRT release", target.name)


def build_run(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str,
              plan: JobPlan, outcome: _Outcome, transfer: on_device.Transfer,
              binary_sha256: str | None = None) -> DeviceRun:
    """The DeviceRun of a finished job: dequantized logits of output 0, or the failing batch's
    error, or (stage ``delegate``) the binary's warning when it did not apply the delegate."""
    sections = split_log(outcome.log)
    execution_plan, applied = parse_delegate_log([text for _, _, text in sections], delegate)
    execution_plan = dataclasses.replace(execution_plan, precision=Precision(**precision_flag(delegate)))
    common = dict(variant=artifact.variant, target=target.name, delegate=delegate,
                  artifact_sha256=artifact.sha256, runtime=RUNTIME,
                  runtime_version=runtime_version(outcome.log, binary_sha256), delegate_applied=applied,
                  batch_size=plan.batch_size, target_properties=dict(target.properties()),
                  transfer=transfer.snapshot(), execution_plan=execution_plan,
                  timings=job_timings([text for _, _, text in sections], len(test), transfer))
    if outcome.failed is not None:
        index, status = outcome.failed
        b = plan.batches[index]
        text = next((t for i, _, t in sections if i == index), "")
        return DeviceRun(logits=None, error=(
            f"{failure_stage(text)}: benchmark_model exited {status} on batch {index} (samples "
            f"{b.start}..{b.start + b.count - 1}) on device {target.name}: {why_failed(text, LOG_TAIL_CHARS)}"), **common)
    unconfirmed = unconfirmed_delegate([text for _, _, text in sections], delegate)
    if unconfirmed:
        return DeviceRun(logits=None, error=f"delegate: {unconfirmed} (on device {target.name})", **common)
    try:
        arrays = split_outputs(outcome.data or b"", plan.outputs, plan.dynamic, plan.batches)
    except ValueError as exc:
        return DeviceRun(logits=None, error=(f"output: benchmark_model on device {target.name} wrote "
                                             f"{outcome.outputs_remote} with {exc}"), **common)
    raw = arrays[0]
    if raw.ndim != 2 or raw.shape[0] != len(test):
        return DeviceRun(logits=None, raw=raw, error=f"output: model output 0 has shape "
                         f"{list(raw.shape)}, not [{len(test)}, K] logits", **common)
    problem = class_count_problem(raw, test)
    if problem:
        return DeviceRun(logits=None, raw=raw, error=problem, **common)
    out = plan.outputs[0]
    return DeviceRun(logits=dequantize(raw, out.scale, out.zero_point), raw=raw, **common)
