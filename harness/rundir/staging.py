"""A sharded job's finished shards, kept in the run directory until the whole job is stored.

A job runs as one device job per shard of the test set (``harness.on_device.shards_of``); each
shard that finishes on a device is written here at once, as one immutable, atomically written file
``shards/<job key>-<shard index>-<shard sha256[:16]>.npz`` (:func:`harness.rundir.layout.staging_path`),
so that a run killed mid-job reruns only its missing shards. The file holds the shard's
``logits`` (float32 [n, K]), its ``raw`` outputs when the runner kept them, and ``meta``: one JSON
string with the shard's DeviceRun facts (runtime, timings, transfer, execution plan, repeat noise)
and its record ``{"index", "sha256", "n", "device"}`` plus the pooled-job facts (``extra``:
``device``, ``attempts``), the sha256 of the model file the job's queue ran (``artifact_sha256``)
and the run directory's config hash. A shard is joined to its job's others only if all three keys
match the session that resumes: the shard's inputs (its name), the model file (a variant converted
again by a newer converter has the same config hash but another file) and the config hash (checked
here too, so deleting manifest.json does not bypass it). Once the job's parts are written the
writer deletes its staged shards; a writer opening the folder deletes the staged shards of
finished jobs and temporary files.

Only :class:`harness.rundir.writer.RunWriter` writes here; the farm reads back through it.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.errors import ResultsError
from harness.fsutil import atomic_write, dumps_json, jsonable
from harness.records import DeviceRun
from harness.records.device import ExecutionPlan, JobTransfer, RepeatNoise, Timings
from harness.rundir import layout
from harness.rundir.layout import Job


@dataclass(frozen=True)
class StagedShard:
    """A finished shard read back: its record (index, sha256, n, device), its run, its job's extra
    facts, the model file its job ran and the config hash it was written under."""

    record: Mapping[str, Any]
    run: DeviceRun
    extra: Mapping[str, Any]
    artifact_sha256: str | None = None
    config_hash: str | None = None


def write(run_dir: Path, job: Job, record: Mapping[str, Any], run: DeviceRun, extra: Mapping[str, Any],
          artifact_sha256: str | None = None, config_hash: str | None = None) -> Path:
    """Write a finished shard of ``job`` (``record``: index, sha256, n, device; ``artifact_sha256``:
    the model file the job's queue ran) atomically; returns its path."""
    path = layout.staging_path(run_dir, layout.job_key(job), int(record["index"]), str(record["sha256"]))
    meta = {"job": list(job), "record": dict(record), "extra": dict(extra), "run": _run_facts(run),
            "artifact_sha256": artifact_sha256, "config_hash": config_hash}
    arrays = {"logits": np.asarray(run.logits, dtype=np.float32), "meta": np.array(dumps_json(jsonable(meta)))}
    if run.raw is not None:
        arrays["raw"] = np.asarray(run.raw)
    buf = io.BytesIO()  # one shard's outputs (at most shard_samples rows): small
    np.savez(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()), error=ResultsError)
    return path


def read(run_dir: Path, job: Job, config_hash: str | None = None) -> dict[int, StagedShard]:
    """The staged shards of ``job`` written under ``config_hash``, by index (a file that does not
    read, or of another config hash, is skipped: its shard runs again)."""
    folder = Path(run_dir) / layout.STAGING_DIR
    key = layout.job_key(job)
    staged: dict[int, StagedShard] = {}
    for path in sorted(folder.glob(f"{key}-*{layout.STAGING_SUFFIX}")) if folder.is_dir() else []:
        shard = _load(path, job)
        if shard is not None and shard.config_hash == config_hash and path == layout.staging_path(run_dir, key, shard.record["index"],
                                                             shard.record["sha256"]):
            staged[int(shard.record["index"])] = shard
    return staged


def remove(run_dir: Path, keys: set[str] | None = None) -> list[Path]:
    """Delete the staged shards of the jobs ``keys`` (None: temporary files only). Returns what went."""
    folder = Path(run_dir) / layout.STAGING_DIR
    if not folder.is_dir():
        return []
    gone = [p for p in folder.iterdir()
            if p.name.endswith(".tmp") or (keys is not None and p.name.split("-", 1)[0] in keys)]
    for path in gone:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot remove {path} from the run directory: {exc}") from exc
    return gone


def _run_facts(run: DeviceRun) -> dict[str, Any]:
    return {"artifact_sha256": run.artifact_sha256, "runtime": run.runtime,
            "runtime_version": run.runtime_version, "delegate_applied": run.delegate_applied,
            "batch_size": run.batch_size, "target_properties": dict(run.target_properties or {}),
            "timings": None if run.timings is None else run.timings.to_json(),
            "transfer": None if run.transfer is None else run.transfer.to_json(),
            "execution_plan": None if run.execution_plan is None else run.execution_plan.to_json(),
            "repeats": None if run.repeats is None else run.repeats.to_json()}


def _load(path: Path, job: Job) -> StagedShard | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            logits = np.array(data["logits"])
            raw = np.array(data["raw"]) if "raw" in data.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # e.g. cut short by a full disk before the rename: the shard runs again
    if not isinstance(meta, dict) or [str(p) for p in meta.get("job") or []] != [str(p) for p in job]:
        return None
    try:
        return _staged(meta, job, logits, raw)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # facts of another qskew version, or edited: the shard runs again


def _staged(meta: dict, job: Job, logits: np.ndarray, raw: np.ndarray | None) -> StagedShard:
    facts = meta["run"]
    opt = lambda cls, key: None if facts.get(key) is None else cls.from_json(facts[key])  # noqa: E731
    run = DeviceRun(variant=job[0], target=job[1], delegate=job[2], artifact_sha256=facts["artifact_sha256"],
                    logits=logits, raw=raw, runtime=facts["runtime"], runtime_version=facts["runtime_version"],
                    delegate_applied=facts["delegate_applied"], batch_size=int(facts["batch_size"]),
                    timings=opt(Timings, "timings"), target_properties=facts["target_properties"],
                    transfer=opt(JobTransfer, "transfer"), execution_plan=opt(ExecutionPlan, "execution_plan"),
                    repeats=opt(RepeatNoise, "repeats"))
    record = dict(meta["record"])
    if len(logits) != int(record["n"]):  # a shard's logits are one row per sample of it
        raise ValueError(f"{len(logits)} rows for {record['n']} samples")
    record["index"], record["sha256"] = int(record["index"]), str(record["sha256"])
    return StagedShard(record=record, run=run, extra=meta.get("extra") or {},
                       artifact_sha256=meta.get("artifact_sha256"), config_hash=meta.get("config_hash"))
