"""The ``python`` runner kind: qskew's device runner (``device_runner/``) on the device's Python.

The job's lifecycle (content-addressed pushes, verified pulls) is :mod:`harness.on_device`'s; this
module adds what is particular to the Python runner. Layout below the target's ``workdir``::

    runner/<sha256 of the runner files>/device_runner/<device_runner.RUNNER_FILES>
    cache/<sha256>.npy        test inputs in their storage dtype (e.g. uint8)
    cache/<sha256>.tflite     models
    jobs/<job id>/job.json    job id = sha256(model, inputs, preprocess, delegate, threads,
                              batch, runtime)[:16]; the runner writes result.json and
                              outputs.npy next to it (a detached run on ADB adds its
                              .qskew-job.{stdout,stderr,exit,pid} files there)

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
import json
import logging
import posixpath
import tempfile
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

import device_runner
from device_runner import protocol
from harness import text
from harness.errors import ConfigError, ProtocolMismatch, RunnerError
from harness.logs import job_logger
from harness.on_device import (Transfer, checked_model, default_timeout_s, pull_verified, push_file,
                               push_inputs, push_verified, with_output)
from harness.records import DeviceRun, ExecutionPlan, GroupedDataset, ModelArtifact, Timings
from harness.runners.common import class_count_problem, dequantize, failed_run
from harness.runners.result_check import check_result
from harness.targets.base import Target
from harness.targets.process import ServedLost

log = logging.getLogger(__name__)

RUNNER_DIR = Path(device_runner.__file__).resolve().parent
RUNNER_FILES = device_runner.RUNNER_FILES  # all a board needs besides numpy + runtime
JOB_ID_CHARS = 16              # 64 bits of sha256: unique among any device's jobs, short in paths
OUTPUT_TAIL_CHARS = 2000       # runner output quoted in errors: enough for a traceback's end
SERVED_RUNNER = True           # one runner per target session where the target can keep it up (tests flip it)
SERVED_MINOR = 4               # protocol 1.4 introduced run.py --serve
# Removes everything in the runner's folder but the manifest ($2...): a planted numpy.py or a
# __pycache__/*.pyc there would run instead of the files qskew pushed (the folder is sys.path[0]).
PRUNE_SCRIPT = ('cd "$1" && shift && for f in * .[!.]* ..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; '
                'keep=; for k in "$@"; do [ "$f" = "$k" ] && keep=1; done; [ -n "$keep" ] || rm -rf -- "$f"; done')
PRUNE_TIMEOUT_S = 60.0
LINE_BREAKS = {"\n", "\r"}  # a job folder named with one cannot go to a served runner as a line: one runner per job
# The runner kept up in each target's session (run.py --serve), once it has greeted: while it is
# alive a job needs neither the runner's files checked nor its folder pruned (its modules are loaded).
_SESSION_RUNNERS: "weakref.WeakKeyDictionary[Target, Any]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _RunnerOutcome:
    """What came back from the device: result.json, the raw outputs (None on error), the output."""

    result: Mapping[str, Any]
    raw: np.ndarray | None
    output: str


def run_job(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str = "xnnpack",
            *, num_threads: int = 2, batch_size: int = 64, runtime: str = "auto",
            timeout_s: float | None = None,
            progress: Callable[[int, int], None] | None = None, allow_unproven: bool = False,
            allow_partial: bool = False) -> DeviceRun:
    """Run ``artifact`` on every sample of ``test`` on ``target`` and return dequantized logits.

    ``delegate`` is "xnnpack", "reference", "builtin", "external:<path.so>[,key=value...]", or one of
    LiteRT CompiledModel's "gpu", "gpu-fp32", "cpu-compiled" (``allow_unproven``: keep a GPU job
    whose placement the runtime does not prove, labelled "<delegate> (unproven)"; ``allow_partial``:
    run one whose model the GPU takes only in part, labelled "<delegate> (partial)");
    ``timeout_s`` defaults to ``on_device.default_timeout_s``; ``progress(done,
    total)`` is called with the runner's progress while a detached job (ADB) runs.
    Raises ConfigError for unknown options, ArtifactError/DatasetError for unusable local files,
    TargetError (RunnerError, ProtocolMismatch, CommandTimeout...) when the device or runner fails.
    """
    if not artifact.ok:
        return failed_run(target, artifact, delegate, artifact.error)
    model_path = checked_model(artifact)
    transfer = Transfer()
    with tempfile.TemporaryDirectory(prefix="qskew-job-") as tmp:
        start = time.perf_counter()
        timeout = timeout_s if timeout_s is not None else default_timeout_s(len(test))
        served = _SESSION_RUNNERS.get(target)  # up since an earlier job: its files are loaded
        if served is None or not served.alive:
            runner = ensure_runner(target, transfer)
            greeted = time.perf_counter()
            served = _served_runner(target, runner, timeout)  # started by a session's first job
            greeted = time.perf_counter() - greeted
        else:
            runner, greeted = served.argv[2], 0.0
            transfer.pushed["runner"] = 0
        inputs_remote, inputs_sha = push_inputs(target, test, transfer)
        model_remote = push_file(target, model_path, artifact.sha256, "model", ".tflite", transfer)
        job = _make_job(model_remote, inputs_remote, test, delegate, num_threads, batch_size, runtime,
                        allow_unproven, allow_partial, durable=served is None)
        job_dir = write_job(target, job, _job_id(artifact.sha256, inputs_sha, job), Path(tmp), transfer)
        transfer.push_s = time.perf_counter() - start - greeted
        start = time.perf_counter() - greeted  # a runner's start counts as running, not pushing
        proc = start_runner(target, runner, job_dir, timeout, progress, served)
        run_s = transfer.run_s = time.perf_counter() - start
        outcome = pull_outcome(target, job_dir, proc, Path(tmp), transfer)
    return build_run(target, artifact, test, delegate, outcome, transfer, run_s)


def _make_job(model_remote: str, inputs_remote: str, test: GroupedDataset, delegate: str,
              num_threads: int, batch_size: int, runtime: str, allow_unproven: bool = False,
              allow_partial: bool = False, durable: bool = True) -> dict:
    """job.json; a served job is not ``durable`` (no fsync: its host reads the files at once)."""
    if num_threads < 1 or batch_size < 1:
        raise ConfigError(f"num_threads ({num_threads}) and batch_size ({batch_size}) must be >= 1")
    try:
        return protocol.make_job(model_remote, inputs_remote, test.preprocess.to_json(), delegate,
                                 num_threads, batch_size, runtime, allow_unproven=allow_unproven,
                                 allow_partial=allow_partial, durable=durable)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _job_id(model_sha: str, inputs_sha: str, job: Mapping[str, Any]) -> str:
    key = [model_sha, inputs_sha, job["preprocess"], job["delegate"], job["num_threads"],
           job["batch_size"], job["runtime"]] + [k for k in ("allow_unproven", "allow_partial") if job.get(k)]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:JOB_ID_CHARS]


def ensure_runner(target: Target, transfer: Transfer) -> str:
    """Put the runner files on the device (once per version) and remove anything else from their
    folder (``PRUNE_SCRIPT``); returns the remote run.py path."""
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
    pruned = target.run(["sh", "-c", PRUNE_SCRIPT, "qskew-prune", remote_dir, *RUNNER_FILES], timeout_s=PRUNE_TIMEOUT_S)
    if pruned.returncode != 0:
        raise RunnerError(f"cannot clear files other than the runner's from {remote_dir}: "
                          f"{text.tail(pruned.stdout + pruned.stderr)}", target.name)
    return posixpath.join(remote_dir, "run.py")


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
                 progress: Callable[[int, int], None] | None = None, served=None):
    """Run the runner on the job folder and check its handshake; returns the CommandResult.

    With ``served`` (:func:`_served_runner`: the target keeps a process up, as the local target
    does), one runner per session takes the jobs one after the other (``run.py --serve``; the runtime is imported once).
    Elsewhere each job starts its own runner, detached where the target supports it (ADB): a long
    silent inference meets no read timeout, and a dropped connection is reconnected and the job
    polled again.
    """
    def watch(line: str) -> None:
        done = protocol.parse_progress(line)
        if done is not None and progress is not None:
            progress(*done)

    proc = None
    if served is not None and not set(job_dir) & LINE_BREAKS:  # a job line holds no line break
        proc = _request_served(target, runner, served, job_dir, timeout_s, watch if progress is not None else None)
    if proc is None:  # -B: the runner writes no __pycache__ next to itself (only the manifest's .py files run)
        if served is not None:  # the served runner was lost: check the files before a new process runs them
            ensure_runner(target, Transfer())
        proc = target.run_detached([target.python, "-B", runner, job_dir], job_dir, timeout_s=timeout_s,
                                   watch=watch if progress is not None else None)
    output = proc.stdout + proc.stderr
    fields = protocol.parse_handshake(proc.stdout)
    if fields is None:
        raise with_output(RunnerError(f"runner {runner} printed no handshake (exit "
                                       f"{proc.returncode}): {text.tail(output, OUTPUT_TAIL_CHARS)}", target.name), output)
    theirs = fields.get("protocol", "?")
    if not _same_major(theirs):
        raise with_output(ProtocolMismatch(f"runner {runner} speaks protocol {theirs}; this host "
                                            f"speaks {protocol.PROTOCOL_VERSION}", target.name), output)
    if proc.returncode == protocol.EXIT_PROTOCOL:
        raise with_output(ProtocolMismatch(f"runner {runner} refused job {job_dir}: "
                                            f"{text.tail(proc.stderr, OUTPUT_TAIL_CHARS)}", target.name), output)
    job_logger(log, target.name).info("runner exited %d after %.2f s", proc.returncode, proc.duration_s)
    return proc


def _request_served(target: Target, runner: str, served, job_dir: str, timeout_s: float, watch):
    """The job's answer from the served runner; when that runner is lost under the job (it died, or
    the link broke: ``ServedLost``) it is ended and one new served runner gets the job, then, if
    that fails too, None (the job gets a runner of its own)."""
    for attempt in (1, 2):
        try:
            return served.request(job_dir, timeout_s, protocol.parse_done, watch)
        except ServedLost as exc:
            job_logger(log, target.name).info("served runner lost (%s); attempt %d", exc, attempt)
            served.close(kill=True)  # it may still run this job on the device: stop it first
        served = _served_runner(target, runner, timeout_s) if attempt == 1 else None
        if served is None:
            return None
    return None


def _served_runner(target: Target, runner: str, timeout_s: float):
    """The target's runner that stays up (``run.py --serve``), or None: the target keeps no process,
    or the runner there does not greet with this protocol major at minor >= SERVED_MINOR (a runner
    per job then also reports what is wrong with it)."""
    served = target.serve([target.python, "-B", runner, protocol.SERVE_FLAG]) if SERVED_RUNNER else None
    if served is None:
        return None
    fields = protocol.parse_handshake(served.greeting(timeout_s) or "")
    try:
        version = tuple(int(p) for p in (fields or {}).get("protocol", "").split("."))
    except ValueError:
        version = ()
    mine = tuple(int(p) for p in protocol.PROTOCOL_VERSION.split("."))
    if len(version) != 2 or version[0] != mine[0] or version[1] < SERVED_MINOR:
        served.close(kill=True)
        return None
    _SESSION_RUNNERS[target] = served
    return served


def pull_outcome(target: Target, job_dir: str, proc, tmp: Path, transfer: Transfer) -> _RunnerOutcome:
    """Pull result.json (and outputs.npy when the job succeeded) from the job folder."""
    output = proc.stdout + proc.stderr
    start = time.perf_counter()
    result = _pull_result(target, job_dir, proc, tmp, transfer, output)
    raw = None
    if result.get("status") == "ok":
        if proc.returncode != protocol.EXIT_OK:
            raise with_output(RunnerError(f"runner exited {proc.returncode} but reported success in "
                                           f"{job_dir}: {text.tail(output, OUTPUT_TAIL_CHARS)}", target.name), output)
        raw = _pull_array(target, posixpath.join(job_dir, result["output"]["file"]),
                          result["output"].get("sha256"), tmp, transfer)
    elif result.get("error_kind") == "job":
        raise with_output(RunnerError(f"runner could not run job {job_dir}: {result.get('error')}",
                                       target.name), output)
    transfer.pull_s = time.perf_counter() - start
    return _RunnerOutcome(result, raw, output)


def _pull_result(target: Target, job_dir: str, proc, tmp: Path, transfer: Transfer,
                 output: str) -> dict:
    remote = posixpath.join(job_dir, protocol.DEFAULT_RESULT)
    if target.stat(remote) is None:
        raise with_output(RunnerError(f"runner exited {proc.returncode} without writing {remote}: "
                                       f"{text.tail(output, OUTPUT_TAIL_CHARS)}", target.name), output)
    local = tmp / protocol.DEFAULT_RESULT
    pull_verified(target, remote, local, None, transfer)
    try:
        result = check_result(local.read_bytes(), remote, target.name, _same_major)
    except RunnerError as err:
        raise with_output(err, output) from None
    if not _same_major(result.get("protocol", "?")):
        raise ProtocolMismatch(f"{remote} is in protocol {result.get('protocol')}; this host speaks "
                               f"{protocol.PROTOCOL_VERSION}", target.name)
    return result


def _pull_array(target: Target, remote: str, sha: str | None, tmp: Path,
                transfer: Transfer) -> np.ndarray:
    local = tmp / posixpath.basename(remote)
    pull_verified(target, remote, local, sha, transfer)
    try:
        # mapped, not read (a million-sample job's outputs stay out of host memory); .npy only:
        # np.load would take a file starting like a zip archive for an .npz
        return np.lib.format.open_memmap(local, mode="r")
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or cut .npy
        raise RunnerError(f"runner wrote an unreadable {remote}: {exc}", target.name) from exc


def build_run(target: Target, artifact: ModelArtifact, test: GroupedDataset, delegate: str,
              outcome: _RunnerOutcome, transfer: Transfer, run_s: float) -> DeviceRun:
    """The DeviceRun for a finished job: dequantized logits, or the runner's error."""
    result = outcome.result
    timings = replace(Timings.from_json(result.get("timings") or {}), host_push_s=round(transfer.push_s, 6),
                      host_run_s=round(run_s, 6), host_pull_s=round(transfer.pull_s, 6))
    common = dict(variant=artifact.variant, target=target.name, delegate=delegate,
                  artifact_sha256=artifact.sha256, runtime=result.get("runtime") or "",
                  runtime_version=result.get("runtime_version") or "",
                  delegate_applied=result.get("delegate_applied") or "",
                  batch_size=int(result.get("batch_size") or 0),
                  target_properties=dict(target.properties()), transfer=transfer.snapshot(),
                  execution_plan=ExecutionPlan.from_json(result.get("execution_plan") or {}))
    if outcome.raw is None:
        return DeviceRun(logits=None, error=f"{result.get('error_kind')}: {result.get('error')}",
                         timings=timings, **common)
    problem = _check_outputs(outcome.raw, result, test, target, outcome.output)
    if problem:
        return DeviceRun(logits=None, raw=outcome.raw, error=problem, timings=timings, **common)
    per_batch = timings.per_batch_s or ()
    latency = 1000.0 * float(sum(per_batch)) / len(test) if per_batch else None
    timings = replace(timings, latency_ms_per_sample=latency)
    out = result["output"]
    logits = dequantize(outcome.raw, float(out.get("scale") or 0.0), int(out.get("zero_point") or 0))
    return DeviceRun(logits=logits, raw=outcome.raw, timings=timings, **common)


def _check_outputs(raw: np.ndarray, result: Mapping[str, Any], test: GroupedDataset, target: Target,
                   output: str) -> str | None:
    """Runner bugs raise; a model whose output is not [N, num_classes] is this job's error."""
    expected = result["output"].get("dtype")
    if raw.dtype.name != expected or raw.ndim < 1 or raw.shape[0] != len(test):
        raise with_output(RunnerError(f"runner returned outputs {raw.dtype.name} {list(raw.shape)}; "
                                       f"expected {expected} with {len(test)} rows", target.name), output)
    if raw.ndim != 2:
        return f"output: model output has shape {list(raw.shape)}, not [N, K] logits"
    return class_count_problem(raw, test)


def _same_major(version: str) -> bool:
    try:
        return protocol.major(version) == protocol.major(protocol.PROTOCOL_VERSION)
    except ValueError:
        return False
