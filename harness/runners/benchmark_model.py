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
last batch padded, the padding's outputs dropped). The binary runs once per batch with a single
run and no warm-up (``--num_runs=1 --min_secs=0 --warmup_runs=0 --warmup_min_secs=0``) and writes
every output tensor, concatenated and headerless, to ``--output_filepath``; the host splits that
with the output dtypes and shapes read from the model on the host, and dequantizes output 0.

Failures are sorted as in :mod:`harness.on_device`: the binary failing on a batch (the model or the
delegate) is the job's ``DeviceRun.error``, quoting the log; the device or the script failing
(a push that does not verify, no output file, a lost device) raises a ``TargetError``.

Since no real binary runs in qskew's tests, ``binary = "standin"`` runs
``device_runner/benchmark_model_standin.py`` instead: the same flags on a TFLite Python runtime.

>>> run = run_job(target, artifact, test, "xnnpack", binary="bin/android_aarch64_benchmark_model")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import device_runner
from device_runner import protocol
from harness import on_device
from harness.errors import ArtifactError, ConfigError, RunnerError, TargetError
from harness.farm.inventory import STANDIN_BINARY
from harness.paths import cache_dir
from harness.records import DeviceRun, GroupedDataset, ModelArtifact, TensorIO
from harness.targets.base import Target

log = logging.getLogger(__name__)

STANDIN = STANDIN_BINARY  # the inventory's ``benchmark_model = "standin"``
STANDIN_FILE = Path(device_runner.__file__).resolve().parent / "benchmark_model_standin.py"
SCRIPT_FILE, LOG_FILE, OUTPUTS_FILE, OUT_DIR = "run.sh", "benchmark.log", "outputs.bin", "out"
SINGLE_RUN_FLAGS = ("--num_runs=1", "--min_secs=0", "--warmup_runs=0", "--warmup_min_secs=0")
CHMOD_TIMEOUT_S = 30.0           # one short command on a slow link
PLAN_SOURCE = "benchmark_model log"  # harness.placement reads whole-graph statements from it
PER_INVOCATION_TIMEOUT_S = 15.0  # one process per batch: binary + model load + delegate set-up
JOB_ID_CHARS = 16                # as on_device: unique among a device's jobs, short in paths
LOG_TAIL_CHARS = 1500            # a failing batch's log quoted in the job's error
MAX_LOG_LINES = 20               # delegate log lines kept in the execution plan
# Lines the script writes around each invocation in benchmark.log, and on its own stdout/stderr.
BATCH_MARK, EXIT_MARK = "QSKEW-BATCH", "QSKEW-BATCH-EXIT"
FAILED_MARK, DONE_MARK, SCRIPT_ERROR = "QSKEW-BATCH-FAILED", "QSKEW-DONE", "QSKEW-SCRIPT-ERROR"
REFERENCE_UNSUPPORTED = (
    "benchmark_model cannot select TFLite's reference kernels: neither it nor its delegate "
    "registrar has a flag for them (it builds BuiltinOpResolver, or "
    "BuiltinOpResolverWithoutDefaultDelegates once --use_xnnpack is given); `builtin` "
    "(--use_xnnpack=false, the built-in CPU kernels) is the closest CPU baseline")

# The delegate registrar's statements after applying a delegate (benchmark_tflite_model.cc, Init).
_APPLIED = re.compile(r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be "
                      r"(?P<how>completely|partially) executed by the delegate"
                      r"(?: w/ (?P<kernels>\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (?P<name>\S+) delegate is explicitly applied, the model graph "
                          r"will not be executed by the delegate")
_DELEGATE_WORDS = re.compile(r"delegat|acceleration", re.I)
# "Inference timings in us: Init: 2141, First inference: 0, Warmup (avg): 0, Inference (avg): 176"
_NUMBER = r"([-+]?(?:nan|inf|\d+(?:\.\d*)?(?:e[-+]?\d+)?))"
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUMBER + r", First inference: " + _NUMBER
                      + r", Warmup \(avg\): " + _NUMBER + r", Inference \(avg\): " + _NUMBER, re.I)
_STANDIN_RUNTIME = re.compile(r"stand-in \(not TFLite's binary\): runtime (\S+) (\S+)")
_VERSION = re.compile(r"(?:TF ?Lite|LiteRT)\S*\s+(?:runtime\s+)?version:?\s*v?(\d[\w.\-]*)", re.I)


class UnsupportedDelegate(ValueError):
    """A delegate spec the benchmark_model binary has no flags for (the job's error, not a crash)."""


@dataclass(frozen=True)
class Batch:
    """One invocation: samples [start, start + count) fed as a tensor of ``fed`` rows."""

    index: int
    start: int
    count: int
    fed: int
    sha256: str
    path: Path | None  # the batch's raw file in the host cache


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
        return _failed(target, artifact, delegate, artifact.error or "unknown error")
    try:
        flags = delegate_flags(delegate)
    except UnsupportedDelegate as exc:
        return _failed(target, artifact, delegate, f"delegate: {exc}")
    model_path = on_device.checked_model(artifact)
    plan = plan_job(model_path, test, batch_size)
    if isinstance(plan, str):
        return _failed(target, artifact, delegate, plan)
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
    return build_run(target, artifact, test, delegate, plan, outcome, transfer)


# ---- delegate flags -------------------------------------------------------------------------


def delegate_flags(spec: str) -> tuple[str, ...]:
    """The benchmark_model flags for a qskew delegate spec (device_runner.protocol.parse_delegate).

    External delegates (and the Edge TPU's) run with ``--use_xnnpack=false`` too, as the Python
    runner gives them the built-in kernels without XNNPACK: every delegate kernel is the library's.
    Raises ConfigError for a malformed spec, UnsupportedDelegate for one the binary cannot express.
    """
    try:
        kind, library, options = protocol.parse_delegate(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if kind == "reference":
        raise UnsupportedDelegate(REFERENCE_UNSUPPORTED)
    simple = {"xnnpack": ("--use_xnnpack=true",), "builtin": ("--use_xnnpack=false",),
              "gpu": ("--use_gpu=true",), "hexagon": ("--use_hexagon=true",)}
    if kind in simple:
        return simple[kind]
    if kind == "nnapi":
        accelerator = options.get("accelerator")
        return ("--use_nnapi=true",) + ((f"--nnapi_accelerator_name={accelerator}",) if accelerator else ())
    for key, value in options.items():  # the registrar splits on ';' then ':' and drops the rest
        if any(c in key + value for c in ";:"):
            raise UnsupportedDelegate(
                f"benchmark_model's --external_delegate_options cannot carry {key}={value!r}: it "
                f"splits options on ';' and each on ':', and drops an option that does not split "
                f"into exactly key:value")
    flags = ("--use_xnnpack=false", f"--external_delegate_path={library}")
    if options:
        flags += ("--external_delegate_options=" + ";".join(f"{k}:{v}" for k, v in options.items()),)
    return flags


def applied_name(spec: str) -> str:
    """What DeviceRun.delegate_applied says when the delegate took part of the graph."""
    kind, library, _ = protocol.parse_delegate(spec)
    if kind == "external":
        return f"external:{library}"
    if kind in ("nnapi", "gpu", "hexagon"):
        return spec.split(",")[0]
    return kind  # xnnpack, edgetpu (as the Python runner names it)


# ---- the plan: model I/O, batch size, input files ----------------------------------------------


def plan_job(model_path: Path, test: GroupedDataset, batch_size: int) -> JobPlan | str:
    """Read the model's I/O on the host and write the batches; a string is the job's error."""
    from device_runner.run import JobFailure
    from harness.quantize.inspect import read_io

    inputs, outputs = read_io(model_path)
    if len(inputs) != 1 or not outputs:
        return (f"model_load: {model_path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"the benchmark_model runner drives models with one input")
    tin = inputs[0]
    if "," in tin.name:
        return (f"input: input tensor name {tin.name!r} contains ',', which benchmark_model's "
                f"--input_layer cannot carry (it splits names on ',')")
    if not tin.shape or list(test.x.shape[1:]) != list(tin.shape[1:]):
        return (f"input: dataset {test.name!r} has sample shape {list(test.x.shape[1:])}; the model "
                f"wants {list(tin.shape[1:])}")
    batch, dynamic = choose_batch(tin, batch_size, len(test))
    try:
        batches = write_batches(test, tin, batch, dynamic)
    except JobFailure as exc:  # the Python runner's conversion refuses (no quantization params)
        return f"input: {exc.message}"
    return JobPlan(tin, tuple(outputs), batch, dynamic, tuple(batches))


def choose_batch(tin: TensorIO, wanted: int, n_samples: int) -> tuple[int, bool]:
    """(batch size, dynamic?): ``wanted`` (at most n) for a -1 batch dimension, else the model's."""
    from device_runner.run import choose_batch as runner_choice  # the Python runner's rule

    return runner_choice({"shape_signature": list(tin.shape_signature or tin.shape)}, wanted, n_samples)


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
            on_device.write_cache_file(path, data)
        batches.append(Batch(i, start, m, fed, sha, path))
    return batches


def output_layout(outputs: Sequence[TensorIO], dynamic: bool, fed: int) -> list[tuple[int, ...]]:
    """Each output's shape for a batch of ``fed`` rows (a -1 batch dimension becomes ``fed``)."""
    shapes = []
    for out in outputs:
        signature = out.shape_signature or out.shape
        if dynamic and signature and signature[0] == -1:
            shapes.append((fed,) + tuple(out.shape[1:]))
        else:
            shapes.append(tuple(out.shape))
    return shapes


def expected_bytes(outputs: Sequence[TensorIO], dynamic: bool, batches: Sequence[Batch]) -> int:
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(out.dtype).itemsize
               for b in batches for out, shape in zip(outputs, output_layout(outputs, dynamic, b.fed)))


def split_outputs(data: bytes, outputs: Sequence[TensorIO], dynamic: bool,
                  batches: Sequence[Batch]) -> list[np.ndarray]:
    """Split outputs.bin (per batch: every output tensor, in output order) into one array per output.

    An output whose first dimension is the batch comes back as [N, ...] (padding rows dropped);
    any other output as [batches, ...]. Raises ValueError when the byte count does not match.
    """
    expected = expected_bytes(outputs, dynamic, batches)
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes, but the model's {len(outputs)} output(s) take {expected} "
                         f"bytes for {len(batches)} batch(es)")
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    offset = 0
    for b in batches:
        for k, (out, shape) in enumerate(zip(outputs, output_layout(outputs, dynamic, b.fed))):
            dtype = np.dtype(out.dtype)
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += count * dtype.itemsize
            parts[k].append(array[:b.count] if shape and shape[0] == b.fed else array)
    return [_join(p, batches) for p in parts]


def _join(pieces: list[np.ndarray], batches: Sequence[Batch]) -> np.ndarray:
    """Batch-major pieces are concatenated to [N, ...]; others are stacked to [batches, ...]."""
    if all(p.ndim and p.shape[0] == b.count for p, b in zip(pieces, batches)):
        return np.concatenate(pieces)
    return np.stack(pieces)


# ---- pushing and the job script --------------------------------------------------------------


def push_binary(target: Target, binary: str, transfer: on_device.Transfer) -> str:
    """Push the binary (or the stand-in) to cache/ once per device and make it executable."""
    if binary == STANDIN:
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
                              f"{_tail(result.stdout + result.stderr)}", target.name)
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
    prefix = ([target.python] if binary == STANDIN else []) + ["./" + posixpath.basename(tool)]
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
    failed = _failed_batch(proc.stdout)
    finished = proc.returncode == 0 and f"{DONE_MARK} " in proc.stdout
    if SCRIPT_ERROR in output or not (finished or (failed and proc.returncode == failed[1])):
        err = RunnerError(f"benchmark_model job script {posixpath.join(job_dir, SCRIPT_FILE)} failed "
                          f"(exit {proc.returncode}): {_tail(output)}", target.name)
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


def _failed_batch(stdout: str) -> tuple[int, int] | None:
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == FAILED_MARK and parts[1].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def build_run(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str,
              plan: JobPlan, outcome: _Outcome, transfer: on_device.Transfer) -> DeviceRun:
    """The DeviceRun of a finished job: dequantized logits of output 0, or the failing batch's error."""
    sections = split_log(outcome.log)
    execution_plan, applied = parse_delegate_log([text for _, _, text in sections], delegate)
    common = dict(variant=artifact.variant, target=target.name, delegate=delegate,
                  artifact_sha256=artifact.sha256, runtime="benchmark_model",
                  runtime_version=runtime_version(outcome.log), delegate_applied=applied,
                  batch_size=plan.batch_size, target_properties=dict(target.properties()),
                  transfer=transfer.to_json(), execution_plan=execution_plan,
                  timings=job_timings([text for _, _, text in sections], len(test), transfer))
    if outcome.failed is not None:
        index, status = outcome.failed
        b = plan.batches[index]
        text = next((t for i, _, t in sections if i == index), "")
        return DeviceRun(logits=None, error=(
            f"{failure_stage(text)}: benchmark_model exited {status} on batch {index} (samples "
            f"{b.start}..{b.start + b.count - 1}) on device {target.name}: {_why(text)}"), **common)
    try:
        arrays = split_outputs(outcome.data or b"", plan.outputs, plan.dynamic, plan.batches)
    except ValueError as exc:
        return DeviceRun(logits=None, error=(f"output: benchmark_model on device {target.name} wrote "
                                             f"{outcome.outputs_remote} with {exc}"), **common)
    raw = arrays[0]
    if raw.ndim != 2 or raw.shape[0] != len(test):
        return DeviceRun(logits=None, raw=raw, error=f"output: model output 0 has shape "
                         f"{list(raw.shape)}, not [{len(test)}, K] logits", **common)
    if raw.shape[1] != test.num_classes:
        return DeviceRun(logits=None, raw=raw, error=(
            f"output: model gives {raw.shape[1]} values per sample but dataset {test.name!r} has "
            f"{test.num_classes} classes"), **common)
    out = plan.outputs[0]
    return DeviceRun(logits=on_device.dequantize(raw, out.scale, out.zero_point), raw=raw, **common)


_EXIT_AT_END = re.compile(EXIT_MARK + r" (\d+) (-?\d+)$")


def split_log(text: str) -> list[tuple[int, int | None, str]]:
    """benchmark.log -> [(batch index, exit status or None, that invocation's output)]."""
    sections: list[list] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == BATCH_MARK and parts[1].isdigit():
            sections.append([int(parts[1]), None, []])
            continue
        end = _EXIT_AT_END.search(line)
        if end and sections:  # an output without a final newline shares the marker's line
            sections[-1][1] = int(end.group(2))
            line = line[:end.start()]
            if not line:
                continue
        if sections:
            sections[-1][2].append(line)
    return [(i, status, "\n".join(body)) for i, status, body in sections]


def parse_timings(text: str) -> dict[str, float] | None:
    """The binary's "Inference timings in us: ..." line in one invocation's output, in us."""
    match = None
    for match in _TIMINGS.finditer(text):
        pass
    if match is None:
        return None
    init, first, warmup, inference = (float(g) for g in match.groups())
    return {"init_us": init, "first_inference_us": first, "warmup_avg_us": warmup,
            "inference_avg_us": inference}


def job_timings(texts: Sequence[str], n_samples: int, transfer: on_device.Transfer) -> dict[str, Any]:
    """per_batch_s (each batch's single inference), init_s per invocation, latency, host times."""
    timings: dict[str, Any] = {"invocations": len(texts), "host_push_s": round(transfer.push_s, 6),
                               "host_run_s": round(transfer.run_s, 6),
                               "host_pull_s": round(transfer.pull_s, 6)}
    parsed = [parse_timings(t) for t in texts]
    found = [p for p in parsed if p is not None]
    timings["per_batch_s"] = [round(p["inference_avg_us"] / 1e6, 7) for p in found]
    timings["init_s"] = [round(p["init_us"] / 1e6, 6) for p in found]  # load + delegate + allocate
    timings["invoke_s"] = round(sum(timings["per_batch_s"]), 6)
    if len(found) != len(parsed):
        timings["timing_lines_missing"] = len(parsed) - len(found)
    complete = found and len(found) == len(parsed) and all(np.isfinite(timings["per_batch_s"]))
    timings["latency_ms_per_sample"] = (1000.0 * timings["invoke_s"] / n_samples
                                        if complete and n_samples else None)
    return timings


def parse_delegate_log(texts: Sequence[str], spec: str) -> tuple[dict[str, Any], str]:
    """(execution_plan, delegate_applied) from the invocations' outputs (the registrar's lines).

    The first invocation with a registrar statement decides: "completely" is one partition and
    the whole graph; "partially ... w/ N delegate kernels" is N partitions; "will not be executed"
    and no statement at all (no delegate applied explicitly) are 0 partitions, delegate "none".
    """
    if not texts:
        return {"available": False, "source": PLAN_SOURCE, "delegate_partitions": None,
                "fully_delegated": None, "log_lines": []}, "unknown"
    lines: list[str] = []
    statements: list[re.Match] | None = None
    for text in texts:
        found = []
        for line in (raw.strip() for raw in text.splitlines()):
            match = _APPLIED.search(line) or _NOT_APPLIED.search(line)
            if match:
                found.append(match)
            if (match or _DELEGATE_WORDS.search(line)) and line not in lines and len(lines) < MAX_LOG_LINES:
                lines.append(line)
        if statements is None and found:
            statements = found
    applied = [m for m in statements or [] if m.re is _APPLIED]
    partitions = sum(1 if m.group("how") == "completely" else int(m.group("kernels") or 0) for m in applied)
    fully = any(m.group("how") == "completely" for m in applied)
    plan = {"available": True, "source": PLAN_SOURCE, "delegate_partitions": partitions,
            "fully_delegated": fully, "log_lines": lines}
    return plan, (applied_name(spec) if partitions else "none")



def runtime_version(log_text: str) -> str:
    """The stand-in names its runtime; a real binary's version if it prints one, else "unknown"."""
    standin = _STANDIN_RUNTIME.search(log_text)
    if standin:
        return f"stand-in on {standin.group(1)} {standin.group(2)}"
    version = _VERSION.search(log_text)
    return version.group(1) if version else "unknown"


def failure_stage(text: str) -> str:
    """The error kind (as the Python runner's) a failing invocation's output points to."""
    if re.search(r"Failed to (?:apply|load delegate)|has no \S+ delegate", text):
        return "delegate"
    if "Failed to allocate tensors" in text:
        return "prepare"
    if re.search(r"Failed to (?:load model|initialize the interpreter)", text):
        return "model_load"
    if re.search(r"The size of .* bytes|input_layer|Input tensor #", text):
        return "input"
    return "invoke"


def _failed(target: Target, artifact: ModelArtifact, delegate: str, error: str) -> DeviceRun:
    return DeviceRun(variant=artifact.variant, target=target.name, delegate=delegate,
                     artifact_sha256=artifact.sha256, logits=None, runtime="benchmark_model",
                     error=error)


def _why(text: str) -> str:
    """A failing invocation's ERROR/FATAL lines first (what went wrong), then its log's tail."""
    errors = [line.strip() for line in (text or "").splitlines()
              if line.startswith(("ERROR:", "FATAL:"))]
    return ("; ".join(errors) + "\n" if errors else "") + "log: " + _tail(text)


def _tail(text: str) -> str:
    text = (text or "").strip()
    return text if len(text) <= LOG_TAIL_CHARS else "..." + text[-LOG_TAIL_CHARS:]
