"""Resuming a run directory: what is finished, what must run again, whether it is the same experiment.

A job is finished once its summary part exists (``harness.rundir.layout``); its status says whether
it ran ("ok": skipped on resume) or failed (run again). Parts that no summary part vouches for were
left by a job interrupted before its summary part was written (or by a rerun interrupted before it
removed the parts it replaces); :func:`remove_unfinished` deletes them when a writer opens the
folder. Shards of an unfinished job kept in ``shards/`` (:mod:`harness.rundir.staging`) are read
back by the farm, which runs only the shards missing; those of a finished job are deleted. A
resume must be of the same experiment: :func:`config_hash` says what must not change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import ResultsError
from harness.fsutil import jsonable
from harness.rundir import layout, staging
from harness.rundir.layout import REFERENCE_JOB, REFERENCE_SEQ, Job
from harness.rundir.reader import read_json, summary_parts

# [run] keys that choose devices, how the jobs are cut into shards or where they run, not what is
# measured (a run may be resumed with other shard sizes: its staged shards of another size are run
# again; with the other executor, or the Ray cluster at another address: both give the same predictions)
DEVICE_KEYS = ("targets", "devices_file", "retries", "shard_samples", "executor", "address")
# Keys added after schema 1 was first written, with the value that means "as before": left out of
# the hash at that value, so a run directory written before they existed can still be resumed.
LATER_DEFAULTS = {("quantize", "fixed_batch"): 0, ("run", "repeat"): 1, ("run", "allow_unproven"): False,
                  ("data", "label"): "",
                  ("data", "features"): [], ("data", "groups"): [], ("data", "intersections"): False,
                  ("data", "unknown"): "error", ("run", "allow_partial"): False}


@dataclass
class RunState:
    """What a writer knows of its run directory: the manifest and every job's newest summary."""

    manifest: dict | None = None
    entries: dict[Job, dict] = field(default_factory=dict)   # job -> summary entry
    seqs: dict[Job, int] = field(default_factory=dict)       # job -> seq of its parts
    next_seq: int = REFERENCE_SEQ + 1

    def record(self, job: Job, seq: int, entry: dict) -> None:
        self.entries[job], self.seqs[job] = entry, seq
        self.next_seq = max(self.next_seq, seq + 1)

    def finished(self, status: str = "ok") -> set[Job]:
        """Jobs whose newest summary has ``status`` ("ok": skip on resume; "failed": run again)."""
        return {job for job, entry in self.entries.items() if entry["status"] == status}


def existing_files(run_dir: Path) -> list[str]:
    """Names of what makes ``run_dir`` hold a run: its manifest, schema-1 files, any part."""
    run_dir = Path(run_dir)
    names = [n for n in (layout.MANIFEST_FILE,) + layout.SCHEMA1_FILES[1:] if (run_dir / n).exists()]
    names += [kind for kind in layout.PART_DIRS
              if (run_dir / kind).is_dir() and any(map(layout.parse_part, (run_dir / kind).iterdir()))]
    return names


def schema_of(run_dir: Path) -> int | None:
    """The schema version of ``run_dir``'s manifest (refusing a newer one), None without a manifest."""
    manifest = read_json(Path(run_dir) / layout.MANIFEST_FILE, required=False)
    return None if manifest is None else manifest["schema_version"]


def open_state(run_dir: Path) -> RunState:
    """The state of a schema-2 run directory, after deleting the parts of unfinished jobs."""
    run_dir = Path(run_dir)
    parts = summary_parts(run_dir)
    state = RunState(manifest=read_json(run_dir / layout.MANIFEST_FILE, required=False))
    for part in parts:
        state.record(part.job, part.seq, part.entry)
    remove_unfinished(run_dir, {(p.seq, p.key) for p in parts})
    # staged shards of a finished job outlived its store (killed in between): no longer needed
    staging.remove(run_dir, {layout.job_key(job) for job in state.finished("ok")})
    return state


def remove_unfinished(run_dir: Path, keep: set[tuple[int, str]]) -> list[Path]:
    """Delete every part not in ``keep`` (seq, key) except the reference's, plus temporary files
    left by a killed write and schema-1 files left by an interrupted conversion. Returns what went."""
    keep = keep | {(REFERENCE_SEQ, layout.job_key(REFERENCE_JOB))}
    gone = [Path(run_dir) / name for name in layout.SCHEMA1_FILES[1:] + layout.SCHEMA1_OPTIONAL_FILES]
    for kind in layout.PART_DIRS:
        for path in (Path(run_dir) / kind).iterdir():
            name = layout.parse_part(path)
            if name not in keep and (name is not None or path.name.endswith(".tmp")):
                gone.append(path)
    gone = [path for path in gone if path.exists()]
    for path in gone:
        _unlink(path)
    return gone


def remove_parts(run_dir: Path, seq: int, key: str) -> None:
    """Delete one job's parts written as ``seq`` (after a rerun replaced them); summary part last."""
    for kind in layout.PART_DIRS:
        _unlink(layout.part_path(run_dir, kind, seq, key))


def config_hash(manifest: Mapping[str, Any]) -> str:
    """sha256 of what must not change for a run directory to be resumed.

    Which devices run is not part of it: a farm run may be resumed with one more phone, or with
    the device that was offline; each job's row names its device.
    """
    dataset = manifest.get("dataset") or {}
    model = manifest.get("model") or {}
    config = dict(manifest.get("config") or {})
    if isinstance(config.get("run"), Mapping):
        config["run"] = {k: v for k, v in config["run"].items() if k not in DEVICE_KEYS}
    for (section, key), default in LATER_DEFAULTS.items():
        if isinstance(config.get(section), Mapping) and jsonable(config[section].get(key, default)) == default:
            config[section] = {k: v for k, v in config[section].items() if k != key}
    key = {"config": config, "dataset_sha256": dataset.get("sha256"),
           "model_sha256": model.get("sha256")}
    return hashlib.sha256(json.dumps(jsonable(key), sort_keys=True).encode()).hexdigest()


def check_config_hash(old: Mapping[str, Any], new: Mapping[str, Any], path: Path) -> None:
    """ResultsError when the manifest at ``path`` (``old``) was written for another experiment."""
    old_hash, new_hash = old.get("config_hash"), new["config_hash"]
    if old_hash and old_hash != new_hash:
        raise ResultsError(f"{path} was written for another experiment (config_hash {old_hash[:12]} != "
                           f"{new_hash[:12]}); use a new run directory")


def check_job_hashes(state: RunState, new_hash: str, run_dir: Path) -> None:
    """ResultsError when a job in ``run_dir`` was written for another experiment: every job's
    summary part holds the config hash too, so deleting manifest.json does not bypass the check."""
    for job, entry in state.entries.items():
        old = entry.get("config_hash")
        if old and old != new_hash:
            path = layout.part_path(run_dir, layout.SUMMARY_DIR, state.seqs[job], layout.job_key(job))
            raise ResultsError(f"{path} (job {'/'.join(job)}) was written for another experiment (config_hash "
                               f"{old[:12]} != {new_hash[:12]}); use a new run directory")


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot remove {path} from the run directory: {exc}") from exc
