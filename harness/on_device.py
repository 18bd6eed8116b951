"""One job's lifecycle on a target: push what is missing, run the device runner, pull and verify.

Layout below the target's ``workdir`` (all content-addressed, so a test set is pushed once per
device however many variants and delegates run on it, and a rerun pushes nothing new)::

    runner/<sha256 of the runner files>/device_runner/{__init__,protocol,run}.py
    cache/<sha256>.npy        test inputs in their storage dtype (e.g. uint8)
    cache/<sha256>.tflite     models
    jobs/<job id>/job.json    job id = sha256(model, inputs, preprocess, delegate, threads,
                              batch, runtime)[:16]; the runner writes result.json and
                              outputs.npy next to it (a detached run on ADB adds its
                              .qskew-job.{stdout,stderr,exit,pid} files there)

Every pushed file is checked by its sha256 on the device after the push; every pulled file is
trusted only if its bytes hash to what the runner recorded (``output.sha256``) or, for
result.json and runners that record nothing, to the device copy's sha256.

Failures are sorted once, here: a failure of the model on this runtime (load, delegate, prepare,
input, invoke, unusable output) becomes ``DeviceRun.error`` so a sweep goes on with the next job;
a failure of the device or the runner itself (a push that does not verify, no handshake, another
protocol major version, a crash without result.json) raises a ``TargetError`` for the caller.

>>> run = run_job(LocalTarget(cache_dir("local-device")), artifact, dataset.subset("test"), "xnnpack")
>>> run.logits.shape, run.delegate_applied
((600, 10), 'xnnpack')
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

import device_runner
from device_runner import protocol
from harness.errors import (ArtifactError, ConfigError, DatasetError, ProtocolMismatch,
                            RunnerError, TargetError)
from harness.paths import cache_dir
from harness.records import DeviceRun, GroupedDataset, ModelArtifact
from harness.targets.base import Target

log = logging.getLogger(__name__)
_INPUTS_FILES: "weakref.WeakKeyDictionary[GroupedDataset, tuple[Path, str]]" = weakref.WeakKeyDictionary()

RUNNER_DIR = Path(device_runner.__file__).resolve().parent
RUNNER_FILES = device_runner.RUNNER_FILES  # all a board needs besides numpy + runtime
BASE_TIMEOUT_S = 60.0          # interpreter start, runtime import and model load on a slow board
PER_SAMPLE_TIMEOUT_S = 0.2     # ~5 samples/s: a 16x8 MobileNet off XNNPACK on a slow board, with room
JOB_ID_CHARS = 16              # 64 bits of sha256: unique among any device's jobs, short in paths
OUTPUT_TAIL_CHARS = 2000       # runner output quoted in errors: enough for a traceback's end


@dataclass
class Transfer:
    """Bytes and seconds spent moving files for one job (mutable while the job runs)."""

    pushed: dict[str, int] = field(default_factory=dict)
    bytes_pulled: int = 0
    push_s: float = 0.0
    pull_s: float = 0.0
    run_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"bytes_pushed": sum(self.pushed.values()), "bytes_pulled": self.bytes_pulled,
                "push_s": round(self.push_s, 6), "run_s": round(self.run_s, 6),
                "pull_s": round(self.pull_s, 6), "pushed": dict(self.pushed)}


@dataclass(frozen=True)
class _RunnerOutcome:
    """What came back from the device: result.json, the raw outputs (None on error), the output."""

    result: Mapping[str, Any]
    raw: np.ndarray | None
    output: str


def run_job(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str = "xnnpack",
            *, num_threads: int = 2, batch_size: int = 64, runtime: str = "auto",
            timeout_s: float | None = None,
            progress: Callable[[int, int], None] | None = None) -> DeviceRun:
    """Run ``artifact`` on every sample of ``test`` on ``target`` and return dequantized logits.

    ``delegate`` is "xnnpack", "reference", "builtin" or "external:<path.so>[,key=value...]";
    ``timeout_s`` defaults to BASE_TIMEOUT_S + PER_SAMPLE_TIMEOUT_S per sample; ``progress(done,
    total)`` is called with the runner's progress while a detached job (ADB) runs.
    Raises ConfigError for unknown options, ArtifactError/DatasetError for unusable local files,
    TargetError (RunnerError, ProtocolMismatch, CommandTimeout...) when the device or runner fails.
    """
    if not artifact.ok:
        return _failed(target, artifact, delegate, artifact.error)
    model_path = checked_model(artifact)
    transfer = Transfer()
    with tempfile.TemporaryDirectory(prefix="qskew-job-") as tmp:
        start = time.perf_counter()
        runner = ensure_runner(target, transfer)
        inputs_remote, inputs_sha = push_inputs(target, test, transfer)
        model_remote = push_file(target, model_path, artifact.sha256, "model", ".tflite", transfer)
        job = _make_job(model_remote, inputs_remote, test, delegate, num_threads, batch_size, runtime)
        job_dir = write_job(target, job, _job_id(artifact.sha256, inputs_sha, job), Path(tmp), transfer)
        transfer.push_s = time.perf_counter() - start
        start = time.perf_counter()
        timeout = timeout_s if timeout_s is not None else default_timeout_s(len(test))
        proc = start_runner(target, runner, job_dir, timeout, progress)
        run_s = transfer.run_s = time.perf_counter() - start
        outcome = pull_outcome(target, job_dir, proc, Path(tmp), transfer)
    return build_run(target, artifact, test, delegate, outcome, transfer, run_s)


def default_timeout_s(n_samples: int) -> float:
    """How long a job may run before it counts as hung: grows with the number of samples."""
    return BASE_TIMEOUT_S + PER_SAMPLE_TIMEOUT_S * n_samples


def checked_model(artifact: ModelArtifact) -> Path:
    """The artifact's .tflite file, checked against its recorded sha256."""
    path = Path(artifact.path) if artifact.path is not None else None
    if path is None or not path.is_file():
        raise ArtifactError(f"variant {artifact.variant!r}: model file {path} does not exist")
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise ArtifactError(f"variant {artifact.variant!r}: {path} has sha256 {actual}, "
                            f"not the recorded {artifact.sha256} (changed on disk?)")
    return path


def _make_job(model_remote: str, inputs_remote: str, test: GroupedDataset, delegate: str,
              num_threads: int, batch_size: int, runtime: str) -> dict:
    if num_threads < 1 or batch_size < 1:
        raise ConfigError(f"num_threads ({num_threads}) and batch_size ({batch_size}) must be >= 1")
    try:
        return protocol.make_job(model_remote, inputs_remote, test.preprocess.to_json(), delegate,
                                 num_threads, batch_size, runtime)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _job_id(model_sha: str, inputs_sha: str, job: Mapping[str, Any]) -> str:
    key = [model_sha, inputs_sha, job["preprocess"], job["delegate"], job["num_threads"],
           job["batch_size"], job["runtime"]]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:JOB_ID_CHARS]


def ensure_runner(target: Target, transfer: Transfer) -> str:
    """Put the runner files on the device (once per version); returns the remote run.py path."""
    digest = hashlib.sha256()
    files = []
    for name in RUNNER_FILES:
        data = (RUNNER_DIR / name).read_bytes()
        digest.update(name.encode() + b"\0" + data + b"\0")
        files.append((name, hashlib.sha256(data).hexdigest()))
    remote_dir = posixpath.join(target.workdir, "runner", digest.hexdigest(), "device_runner")
    for name, sha in files:
        pushed = push_verified(target, RUNNER_DIR / name, sha, posixpath.join(remote_dir, name))
        transfer.pushed["runner"] = transfer.pushed.get("runner", 0) + pushed
    return posixpath.join(remote_dir, "run.py")


def push_inputs(target: Target, test: GroupedDataset, transfer: Transfer) -> tuple[str, str]:
    """Write test.x (storage dtype) once to the host cache and push it; returns (remote, sha256)."""
    local, sha = _inputs_file(test)
    return push_file(target, local, sha, "inputs", ".npy", transfer), sha


def _inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    """The host cache file holding test.x as .npy, named by the sha256 of its bytes.

    Remembered per dataset object (datasets are frozen and their arrays read-only), so a sweep of
    many variants and delegates serializes and hashes the test set once, not once per job.
    """
    known = _INPUTS_FILES.get(test)
    if known is not None and known[0].is_file():
        return known
    made = _write_inputs_file(test)
    _INPUTS_FILES[test] = made
    return made


def _write_inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    buf = io.BytesIO()
    try:
        np.save(buf, np.ascontiguousarray(test.x), allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"dataset {test.name!r}: samples of dtype {test.x.dtype} cannot travel "
                           f"to a device: {exc}") from exc
    data = buf.getbuffer()
    sha = hashlib.sha256(data).hexdigest()
    path = cache_dir("inputs") / f"{sha}.npy"
    if not path.is_file() or path.stat().st_size != len(data):
        write_cache_file(path, data)
    return path, sha


def write_cache_file(path: Path, data: bytes) -> None:
    """Write a host cache file via a temporary name and a rename: a reader never sees half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def push_file(target: Target, local: Path, sha: str, kind: str, suffix: str,
              transfer: Transfer) -> str:
    """Push ``local`` to <workdir>/cache/<sha><suffix> unless it is there; returns the remote path."""
    remote = posixpath.join(target.workdir, "cache", sha + suffix)
    transfer.pushed[kind] = transfer.pushed.get(kind, 0) + push_verified(target, local, sha, remote)
    return remote


def push_verified(target: Target, local: Path, sha: str, remote: str) -> int:
    """Push unless ``remote`` already holds these bytes; verify after a push. Returns bytes pushed."""
    size = local.stat().st_size
    existing = target.stat(remote)
    if existing is not None and existing.size_bytes == size and target.sha256(remote) == sha:
        return 0
    target.mkdirs(posixpath.dirname(remote))
    target.push(local, remote)
    got = target.sha256(remote)
    if got != sha:
        raise TargetError(f"pushed {local} to {remote}, but the device copy has sha256 {got}, "
                          f"not {sha}", target.name)
    log.debug("[%s] pushed %s (%d bytes)", target.name, remote, size)
    return size


def write_job(target: Target, job: Mapping[str, Any], job_id: str, tmp: Path,
              transfer: Transfer) -> str:
    """Push job.json into <workdir>/jobs/<job id>/; returns that folder."""
    local = tmp / protocol.JOB_FILE
    local.write_text(protocol.dumps(dict(job)) + "\n")
    job_dir = posixpath.join(target.workdir, "jobs", job_id)
    target.mkdirs(job_dir)
    target.push(local, posixpath.join(job_dir, protocol.JOB_FILE))
    transfer.pushed["job"] = transfer.pushed.get("job", 0) + local.stat().st_size
    return job_dir


def start_runner(target: Target, runner: str, job_dir: str, timeout_s: float,
                 progress: Callable[[int, int], None] | None = None):
    """Run the runner on the job folder and check its handshake; returns the CommandResult.

    The runner runs detached where the target supports it (ADB): a long silent inference meets no
    read timeout, and a dropped connection is reconnected and the job polled again.
    """
    def watch(line: str) -> None:
        done = protocol.parse_progress(line)
        if done is not None and progress is not None:
            progress(*done)

    proc = target.run_detached([target.python, runner, job_dir], job_dir, timeout_s=timeout_s,
                               watch=watch if progress is not None else None)
    output = proc.stdout + proc.stderr
    fields = protocol.parse_handshake(proc.stdout)
    if fields is None:
        raise _with_output(RunnerError(f"runner {runner} printed no handshake (exit "
                                       f"{proc.returncode}): {_tail(output)}", target.name), output)
    theirs = fields.get("protocol", "?")
    if not _same_major(theirs):
        raise _with_output(ProtocolMismatch(f"runner {runner} speaks protocol {theirs}; this host "
                                            f"speaks {protocol.PROTOCOL_VERSION}", target.name), output)
    if proc.returncode == protocol.EXIT_PROTOCOL:
        raise _with_output(ProtocolMismatch(f"runner {runner} refused job {job_dir}: "
                                            f"{_tail(proc.stderr)}", target.name), output)
    log.info("[%s] runner exited %d after %.2f s", target.name, proc.returncode, proc.duration_s)
    return proc


def pull_outcome(target: Target, job_dir: str, proc, tmp: Path, transfer: Transfer) -> _RunnerOutcome:
    """Pull result.json (and outputs.npy when the job succeeded) from the job folder."""
    output = proc.stdout + proc.stderr
    start = time.perf_counter()
    result = _pull_result(target, job_dir, proc, tmp, transfer, output)
    raw = None
    if result.get("status") == "ok":
        if proc.returncode != protocol.EXIT_OK:
            raise _with_output(RunnerError(f"runner exited {proc.returncode} but reported success in "
                                           f"{job_dir}: {_tail(output)}", target.name), output)
        raw = _pull_array(target, posixpath.join(job_dir, result["output"]["file"]),
                          result["output"].get("sha256"), tmp, transfer)
    elif result.get("error_kind") == "job":
        raise _with_output(RunnerError(f"runner could not run job {job_dir}: {result.get('error')}",
                                       target.name), output)
    transfer.pull_s = time.perf_counter() - start
    return _RunnerOutcome(result, raw, output)


def _pull_result(target: Target, job_dir: str, proc, tmp: Path, transfer: Transfer,
                 output: str) -> dict:
    remote = posixpath.join(job_dir, protocol.DEFAULT_RESULT)
    if target.stat(remote) is None:
        raise _with_output(RunnerError(f"runner exited {proc.returncode} without writing {remote}: "
                                       f"{_tail(output)}", target.name), output)
    local = tmp / protocol.DEFAULT_RESULT
    pull_verified(target, remote, local, None, transfer)
    try:
        result = json.loads(local.read_text())
    except ValueError as exc:
        raise RunnerError(f"runner wrote an unreadable {remote}: {exc}", target.name) from exc
    if not _same_major(result.get("protocol", "?")):
        raise ProtocolMismatch(f"{remote} is in protocol {result.get('protocol')}; this host speaks "
                               f"{protocol.PROTOCOL_VERSION}", target.name)
    return result


def _pull_array(target: Target, remote: str, sha: str | None, tmp: Path,
                transfer: Transfer) -> np.ndarray:
    local = tmp / posixpath.basename(remote)
    pull_verified(target, remote, local, sha, transfer)
    try:
        return np.load(local, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RunnerError(f"runner wrote an unreadable {remote}: {exc}", target.name) from exc


def pull_verified(target: Target, remote: str, local: Path, sha: str | None,
                  transfer: Transfer) -> None:
    """Pull ``remote`` and trust it only if its bytes hash to ``sha`` (the runner's record) or,
    when the runner recorded none, to the device copy's own sha256."""
    target.pull(remote, local)
    transfer.bytes_pulled += local.stat().st_size
    expected = sha or target.sha256(remote)
    got = sha256_file(local)
    if got != expected:
        source = "the runner recorded" if sha else "the device copy has"
        raise TargetError(f"pulled {remote}, but the copy has sha256 {got}; {source} {expected}",
                          target.name)


def build_run(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str,
              outcome: _RunnerOutcome, transfer: Transfer, run_s: float) -> DeviceRun:
    """The DeviceRun for a finished job: dequantized logits, or the runner's error."""
    result = outcome.result
    timings = dict(result.get("timings") or {})
    timings.update(host_push_s=round(transfer.push_s, 6), host_run_s=round(run_s, 6),
                   host_pull_s=round(transfer.pull_s, 6))
    common = dict(variant=artifact.variant, target=target.name, delegate=delegate,
                  artifact_sha256=artifact.sha256, runtime=result.get("runtime") or "",
                  runtime_version=result.get("runtime_version") or "",
                  delegate_applied=result.get("delegate_applied") or "",
                  batch_size=int(result.get("batch_size") or 0), timings=timings,
                  target_properties=dict(target.properties()), transfer=transfer.to_json(),
                  execution_plan=dict(result.get("execution_plan") or {}))
    if outcome.raw is None:
        return DeviceRun(logits=None, error=f"{result.get('error_kind')}: {result.get('error')}",
                         **common)
    problem = _check_outputs(outcome.raw, result, test, target, outcome.output)
    if problem:
        return DeviceRun(logits=None, raw=outcome.raw, error=problem, **common)
    per_batch = timings.get("per_batch_s") or []
    timings["latency_ms_per_sample"] = 1000.0 * float(sum(per_batch)) / len(test) if per_batch else None
    out = result["output"]
    logits = dequantize(outcome.raw, float(out.get("scale") or 0.0), int(out.get("zero_point") or 0))
    return DeviceRun(logits=logits, raw=outcome.raw, **common)


def _check_outputs(raw: np.ndarray, result: Mapping[str, Any], test: GroupedDataset, target: Target,
                   output: str) -> str | None:
    """Runner bugs raise; a model whose output is not [N, num_classes] is this job's error."""
    expected = result["output"].get("dtype")
    if raw.dtype.name != expected or raw.ndim < 1 or raw.shape[0] != len(test):
        raise _with_output(RunnerError(f"runner returned outputs {raw.dtype.name} {list(raw.shape)}; "
                                       f"expected {expected} with {len(test)} rows", target.name), output)
    if raw.ndim != 2:
        return f"output: model output has shape {list(raw.shape)}, not [N, K] logits"
    if raw.shape[1] != test.num_classes:
        return (f"output: model gives {raw.shape[1]} values per sample but dataset {test.name!r} has "
                f"{test.num_classes} classes")
    return None


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw output values -> float32 logits: real = (q - zero_point) * scale (float outputs as is)."""
    if scale == 0.0:
        return raw.astype(np.float32)
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _failed(target: Target, artifact: ModelArtifact, delegate: str, error: str) -> DeviceRun:
    return DeviceRun(variant=artifact.variant, target=target.name, delegate=delegate,
                     artifact_sha256=artifact.sha256, logits=None, error=error)


def _same_major(version: str) -> bool:
    try:
        return protocol.major(version) == protocol.major(protocol.PROTOCOL_VERSION)
    except ValueError:
        return False


def _with_output(err: TargetError, output: str) -> TargetError:
    """Attach the runner's full output to an error (its message quotes only the tail)."""
    err.output = output
    return err


def _tail(text: str) -> str:
    text = (text or "").strip()
    return text if len(text) <= OUTPUT_TAIL_CHARS else "..." + text[-OUTPUT_TAIL_CHARS:]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
