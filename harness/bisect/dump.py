"""Run a tensor job (``device_runner/tensors.py``) on a target and bring every kept tensor back.

The job travels like any Python-runner job (:mod:`harness.runners.python`: the runner files, the
content-addressed inputs and model, job.json under ``jobs/``), with the additive job key
``tensors``; result.json's ``tensors`` entry names the kept tensors and the sha256 of
``tensors.npz``, which is trusted only if the pulled copy hashes to it.

>>> dump = dump_tensors(target, Path("int8.tflite"), sha, test, "builtin")   # doctest: +SKIP
>>> dump.values[12].shape                                                   # doctest: +SKIP
(50, 8, 8, 16)
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from device_runner import protocol
from device_runner.tensors import TENSORS_KEY
from harness.errors import RunnerError
from harness.on_device import Transfer, default_timeout_s, pull_verified, push_file, push_inputs
from harness.records import GroupedDataset
from harness.runners.python import ensure_runner, pull_outcome, start_runner, write_job
from harness.targets.base import Target

TENSORS_FILE = "tensors.npz"
JOB_ID_CHARS = 16
# A tensor job invokes once per sample and copies every tensor: slower per sample than a batched job.
TIMEOUT_FACTOR = 4.0


@dataclass(frozen=True)
class KeptTensor:
    """A tensor the device read back: quantization as the interpreter reported it, and where it
    was computed (``input``, ``cpu`` or ``delegate``: the output of a delegate's partition)."""

    index: int
    name: str
    dtype: str
    scale: float
    zero_point: int
    node: int
    on: str


@dataclass(frozen=True, eq=False)
class TensorDump:
    """Every kept tensor of one job on the chosen samples, raw values [N, ...]."""

    target: str
    delegate: str
    runtime: str
    delegate_applied: str
    kept: tuple[KeptTensor, ...]
    values: Mapping[int, np.ndarray]
    placement: tuple[Mapping[str, Any], ...]   # the execution plan's nodes: {"node", "op", "on"}
    run_s: float


def dump_tensors(target: Target, model_path: Path, model_sha: str, test: GroupedDataset, delegate: str, *,
                 num_threads: int = 2, runtime: str = "auto", allow_partial: bool = False) -> TensorDump:
    """Run ``model_path`` on every sample of ``test`` on ``target`` as a tensor job.

    Raises RunnerError when the job fails on the device or the runner returns no tensors (a runner
    older than tensor jobs), TargetError when the device does.
    """
    transfer = Transfer()
    with tempfile.TemporaryDirectory(prefix="qskew-bisect-") as tmp:
        runner = ensure_runner(target, transfer)
        inputs_remote, inputs_sha = push_inputs(target, test, transfer)
        model_remote = push_file(target, model_path, model_sha, "model", ".tflite", transfer)
        job = protocol.make_job(model_remote, inputs_remote, test.preprocess.to_json(), delegate, num_threads, 1,
                                runtime, allow_partial=allow_partial)
        job[TENSORS_KEY] = {"file": TENSORS_FILE}
        key = json.dumps([model_sha, inputs_sha, delegate, num_threads, runtime, allow_partial, TENSORS_KEY])
        job_dir = write_job(target, job, "bisect-" + hashlib.sha256(key.encode()).hexdigest()[:JOB_ID_CHARS],
                            Path(tmp), transfer)
        start = time.perf_counter()
        proc = start_runner(target, runner, job_dir, TIMEOUT_FACTOR * default_timeout_s(len(test)))
        run_s = time.perf_counter() - start
        outcome = pull_outcome(target, job_dir, proc, Path(tmp), transfer)
        result = outcome.result
        if outcome.raw is None:
            raise RunnerError(f"tensor job {delegate} failed: {result.get('error_kind')}: {result.get('error')}",
                              target.name)
        kept, values = _pull_tensors(target, job_dir, result, len(test), Path(tmp), transfer)
    plan = result.get("execution_plan") or {}
    return TensorDump(target=target.name, delegate=delegate, runtime=f"{result.get('runtime')} "
                      f"{result.get('runtime_version')}", delegate_applied=str(result.get("delegate_applied")),
                      kept=kept, values=values, placement=tuple(plan.get("placement") or ()), run_s=run_s)


def _pull_tensors(target: Target, job_dir: str, result: Mapping[str, Any], n: int, tmp: Path,
                  transfer: Transfer) -> tuple[tuple[KeptTensor, ...], dict[int, np.ndarray]]:
    entry = result.get(TENSORS_KEY)
    if not isinstance(entry, dict) or not isinstance(entry.get("kept"), list):
        raise RunnerError(f"the runner in {job_dir} returned no tensors: it predates tensor jobs "
                          f"(protocol {result.get('protocol')}); push the current device_runner", target.name)
    if posixpath.basename(str(entry.get("file"))) != entry.get("file"):
        raise RunnerError(f"the runner named an unsafe tensors file {entry.get('file')!r}", target.name)
    local = tmp / TENSORS_FILE
    pull_verified(target, posixpath.join(job_dir, entry["file"]), local, entry.get("sha256"), transfer)
    try:
        kept = tuple(KeptTensor(int(k["index"]), str(k["name"]), str(k["dtype"]), float(k["scale"]),
                                int(k["zero_point"]), int(k["node"]), str(k["on"])) for k in entry["kept"])
        with np.load(local, allow_pickle=False) as npz:
            values = {k.index: npz[f"t{k.index}"] for k in kept}
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise RunnerError(f"the runner wrote an unusable {TENSORS_FILE} in {job_dir}: {exc!r}", target.name) from exc
    short = [k.index for k in kept if values[k.index].shape[:1] != (n,)]
    if short:
        raise RunnerError(f"{TENSORS_FILE} in {job_dir}: tensors {short} do not hold {n} samples", target.name)
    return kept, values
