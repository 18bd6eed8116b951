"""Write a run directory one job at a time (schema 2, layout in :mod:`harness.rundir.layout`).

Each ``add_*`` writes the job's own parts and touches nothing an earlier job wrote, so the cost of
a job does not grow with the number of jobs before it; a job's summary part goes last and marks it
finished. The scores come from the metrics stage (``harness.metrics.score.score_job``); the writer
only stores them.

Example::

    writer = RunWriter(Path("runs/demo"), resume=True)
    writer.write_manifest({"config": exp.to_json()})
    writer.add_reference(ref, test)
    writer.add_run(device_run, score_job(device_run, ref, test))
    print(format_table(read_run(Path("runs/demo")).metrics))
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from harness.errors import ResultsError, failure_stage
from harness.fsutil import atomic_write as _atomic_write, dumps_json, jsonable
from harness.records import DeviceRun, GroupedDataset, Logits, row_chunks, same_rows
from harness.rundir import layout, lock as _lock, resume as _resume, staging as _staging
from harness.rundir.entry import SummaryEntry
from harness.rundir.layout import JOB_KEYS, MANIFEST_FILE, REFERENCE_JOB, REFERENCE_SEQ, SCHEMA_VERSION, Job
from harness.rundir.reader import read_json, read_schema1, summary_parts

# Rows per row group of a predictions part, built and written one at a time: a few MB of arrow
# data, so writing a job of a million samples holds one row group, not the job's whole table.
PREDICTION_ROWS = 65_536

if TYPE_CHECKING:  # pandas/pyarrow are imported lazily: the CLI imports this module at start-up
    import pandas as pd
    import pyarrow as pa

    from harness.metrics.score import JobScore


class RunWriter:
    """Writes a run directory job by job; every ``add_*`` leaves complete parts on disk.

    ``resume=False`` refuses a folder that already holds a run; ``resume=True`` opens what is there
    (converting a schema-1 directory to schema 2 once, deleting parts of jobs that never wrote
    their summary part) so finished jobs can be skipped via :meth:`completed_jobs`. Adding a job
    that failed before replaces its summary; a finished job ("ok") or the reference rows are never
    replaced (a ResultsError / kept as they are).

    The writer holds the run directory's lock (:mod:`harness.rundir.lock`) from its creation to
    :meth:`close` (or the end of a ``with`` block): a second writer fails at once, naming it.
    """

    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = Path(run_dir)
        _lock.acquire(self.run_dir)
        self._release = weakref.finalize(self, _lock.release, self.run_dir)
        try:
            self._open(resume)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the run directory's lock (once; the writer writes nothing after this)."""
        self._release()

    def _open(self, resume: bool) -> None:
        existing = _resume.existing_files(self.run_dir)
        if existing and not resume:
            raise ResultsError(f"{self.run_dir} already holds a run ({', '.join(existing)}); "
                               f"resume it or choose another folder")
        try:
            for kind in layout.PART_DIRS:
                (self.run_dir / kind).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create run directory {self.run_dir}: {exc}") from exc
        if _resume.schema_of(self.run_dir) == layout.SCHEMA1:
            convert_schema1(self.run_dir)
        self._state = _resume.open_state(self.run_dir)
        self._manifest = self._state.manifest

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write manifest.json (adds schema_version, created, updated, config_hash)."""
        now = _now()
        new = {**jsonable(dict(manifest)), "schema_version": SCHEMA_VERSION, "created": now, "updated": now,
               "config_hash": _resume.config_hash(manifest)}
        _resume.check_job_hashes(self._state, new["config_hash"], self.run_dir)  # even without a manifest
        if self._manifest is not None:
            _resume.check_config_hash(self._manifest, new, self.run_dir / MANIFEST_FILE)
            new["created"] = self._manifest.get("created", now)
            # devices of earlier sessions keep their facts; a device seen again is updated
            new["targets"] = {**(self._manifest.get("targets") or {}), **(new.get("targets") or {})}
            # so does the plan: a resume with other devices adds their jobs to the earlier ones'
            if self._manifest.get("plan") is not None or new.get("plan") is not None:
                old_plan = list(self._manifest.get("plan") or [])
                new["plan"] = old_plan + [job for job in new.get("plan") or [] if job not in old_plan]
        self._manifest = new
        write_json(self.run_dir / MANIFEST_FILE, new)

    def add_reference(self, ref: Logits, test: GroupedDataset) -> Logits:
        """Store the FP32 reference logits (in test order) as the predictions part of ``REFERENCE_JOB``;
        returns the reference the run's jobs are to be scored against.

        A resumed run keeps the reference rows it has (the jobs already in it were scored against
        them, and the manifest's config hash says the experiment is the same) and returns those, so
        that the jobs of this session are scored against the same rows: a reference computed again
        on another host or runtime may differ in its last bits, and the stored metrics would then no
        longer be what the stored predictions give."""
        from harness.metrics.compare import align_reference

        key = layout.job_key(REFERENCE_JOB)
        path = layout.part_path(self.run_dir, layout.PREDICTIONS_DIR, REFERENCE_SEQ, key)
        if path.exists():
            return stored_reference(path, ref.outputs)
        values = ref.values if same_rows(np.asarray(ref.ids), test.ids) else \
            align_reference(ref, np.asarray(test.ids).astype(str), "reference").astype(np.float32)  # exact
        write_parquet(path, predictions_tables(REFERENCE_JOB, test.ids, test.group, test.y, None, values))
        return ref

    def add_run(self, run: DeviceRun, score: "JobScore | None", device: Mapping[str, Any] | None = None,
                attempts: Iterable[Mapping[str, Any]] = (), shards: Iterable[Mapping[str, Any]] = ()) -> None:
        """Store a finished job's predictions, metrics, placement and summary from its ``score``.

        A run that failed (``run.ok`` is False; ``score`` is then unused) is recorded with
        :meth:`add_failure`, stage "run". ``device`` and ``attempts`` are a pooled job's: the
        member that ran it and the attempts that failed on other members before; ``shards`` the
        test-set shards it ran as ({"index", "sha256", "n", "device"}), whose staged files
        (:meth:`add_shard`) are deleted once the job's parts are written.
        """
        if not run.ok:
            self.add_failure(run.variant, run.target, run.delegate, run.error or "unknown error",
                             stage=failure_stage(run), device=device, attempts=attempts)
            return
        job = (run.variant, run.target, run.delegate)
        if score is None or tuple(score.job) != job:
            raise ResultsError(f"the score handed to {self.run_dir} is not job {'/'.join(job)}'s")
        entry = replace(SummaryEntry.from_run(run, status="ok", disparity=score.summary),
                        device=dict(device) if device else None, attempts=tuple(map(dict, attempts)),
                        shards=tuple(map(dict, shards)))
        predictions = predictions_tables(job, score.ids, score.groups, score.labels, None, score.logits)
        self._store(job, entry, predictions, score.metrics, list(score.placement))
        _staging.remove(self.run_dir, {layout.job_key(job)})

    def add_shard(self, job: Job, record: Mapping[str, Any], run: DeviceRun,
                  extra: Mapping[str, Any] | None = None, artifact_sha256: str | None = None) -> None:
        """Keep one finished shard of ``job`` (``record``: index, sha256, n, device; ``extra``: the
        pooled job's device and attempts; ``artifact_sha256``: the model file the job's queue ran)
        until all its shards are in (:mod:`harness.rundir.staging`), under the manifest's config hash."""
        if job in self.completed_jobs():
            raise ResultsError(f"job {'/'.join(job)} already finished in {self.run_dir}; its shards are not kept")
        _staging.write(self.run_dir, job, record, run, extra or {}, artifact_sha256, self._config_hash())

    def staged_shards(self, job: Job) -> "dict[int, _staging.StagedShard]":
        """The finished shards of ``job`` kept so far under this manifest's config hash, by shard
        index (a resume runs only the others; the caller checks each one's model file)."""
        return _staging.read(self.run_dir, job, self._config_hash())

    def _config_hash(self) -> str | None:
        return (self._manifest or {}).get("config_hash")

    def add_failure(self, variant: str, target: str, delegate: str, error: str, stage: "str | Enum",
                    device: Mapping[str, Any] | None = None, attempts: Iterable[Mapping[str, Any]] = ()) -> None:
        """Record a job that failed at ``stage`` (e.g. "convert", "run"; a str-valued Enum is stored
        as its value): a summary part only (``device``/``attempts`` as for :meth:`add_run`)."""
        failed = DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256=None,
                           logits=None, error=str(error))
        stage = stage.value if isinstance(stage, Enum) else str(stage)
        entry = replace(SummaryEntry.from_run(failed, status="failed", stage=stage),
                        device=dict(device) if device else None, attempts=tuple(map(dict, attempts)))
        self._store((variant, target, delegate), entry, None, None, [])

    def completed_jobs(self) -> set[Job]:
        """Jobs that finished with status "ok" (a rerun can skip them)."""
        return {job for job, entry in self._state.entries.items() if entry["status"] == "ok"}

    def _store(self, job: Job, entry: SummaryEntry, predictions: "pa.Table | Iterable[pa.Table] | None", metrics: "pd.DataFrame | None",
               placement: list[dict]) -> None:
        """Write the job's parts under the next sequence number, summary last, then drop the parts
        of the job's earlier, failed run (if any). A finished job is never replaced: its rows stay."""
        if job in self.completed_jobs():
            raise ResultsError(f"job {'/'.join(job)} already finished in {self.run_dir}; its rows are kept "
                               f"(a finished job is never replaced)")
        key, seq = layout.job_key(job), self._state.next_seq
        stored = replace(entry, config_hash=(self._manifest or {}).get("config_hash")).to_json()
        write_job_parts(self.run_dir, seq, job, stored, predictions, metrics,
                        placement_frame(placement) if placement else None)
        old = self._state.seqs.get(job)
        self._state.record(job, seq, stored)
        if old is not None:
            _resume.remove_parts(self.run_dir, old, key)


def write_job_parts(run_dir: Path, seq: int, job: Job, entry: Mapping[str, Any], predictions: "pa.Table | Iterable[pa.Table] | None",
                    metrics: "pd.DataFrame | None", placement: "pd.DataFrame | None") -> None:
    """Write one job's parts as ``seq``, its summary part last (it marks the job finished)."""
    key = layout.job_key(job)
    part = lambda kind: layout.part_path(run_dir, kind, seq, key)  # noqa: E731
    if predictions is not None:
        write_parquet(part(layout.PREDICTIONS_DIR), predictions)
    if metrics is not None and len(metrics):
        write_csv(part(layout.METRICS_DIR), metrics[list(layout.metrics_columns(stored=True))])
    if placement is not None and len(placement):
        write_csv(part(layout.PLACEMENT_DIR), placement)
    write_json(part(layout.SUMMARY_DIR), {"schema_version": SCHEMA_VERSION, "run": jsonable(dict(entry))})


def convert_schema1(run_dir: Path) -> None:
    """Rewrite an older (schema 1) run directory as schema 2, once, when a writer resumes it.

    The jobs keep their finishing order and their stored values (floats round-trip exactly). The
    manifest, rewritten with schema_version 2, is the commit point: interrupted before it, the
    next resume converts again from the untouched schema-1 files; after it, the next writer deletes
    the schema-1 files left behind (``resume.remove_unfinished``).
    """
    import pyarrow as pa

    manifest = read_json(run_dir / MANIFEST_FILE, required=True)
    data = read_schema1(run_dir, manifest, required=False)
    for kind in layout.PART_DIRS:  # parts of an earlier, interrupted conversion
        for path in (run_dir / kind).iterdir():
            path.unlink()
    schema = layout.predictions_schema()
    by_job = lambda frame: frame.groupby(list(JOB_KEYS), sort=False)  # noqa: E731
    rows = {job: part for job, part in by_job(data.predictions)}
    metrics = {job: part for job, part in by_job(data.metrics)}
    placement = {job: part for job, part in by_job(data.placement)} if data.placement is not None else {}
    to_table = lambda frame: pa.Table.from_pandas(frame, schema=schema, preserve_index=False)  # noqa: E731
    if REFERENCE_JOB in rows:
        key = layout.job_key(REFERENCE_JOB)
        path = layout.part_path(run_dir, layout.PREDICTIONS_DIR, REFERENCE_SEQ, key)
        write_parquet(path, to_table(rows[REFERENCE_JOB]))
    for seq, entry in enumerate(data.summary["runs"], start=REFERENCE_SEQ + 1):
        job = tuple(entry[k] for k in JOB_KEYS)
        ok = entry["status"] == "ok"
        write_job_parts(run_dir, seq, job, entry, to_table(rows[job]) if ok else None,
                        metrics.get(job) if ok else None, placement.get(job) if ok else None)
    write_json(run_dir / MANIFEST_FILE, {**manifest, "schema_version": SCHEMA_VERSION})
    _resume.remove_unfinished(run_dir, keep={(p.seq, p.key) for p in summary_parts(run_dir)})


def write_signoff(run_dir: Path, verdict: Mapping[str, Any]) -> Path:
    """Write a sign-off verdict (a JSON object) atomically as RUN_DIR/signoff.json; returns the path."""
    path = Path(run_dir) / layout.SIGNOFF_FILE
    write_json(path, {"schema_version": SCHEMA_VERSION, **jsonable(verdict)})
    return path


# -- parts -------------------------------------------------------------------------------------

def predictions_tables(job: Job, ids, groups, labels, preds, logits: np.ndarray,
                       rows: int | None = None) -> "Iterator[pa.Table]":
    """One job's predictions rows as arrow tables of ``rows`` (default ``PREDICTION_ROWS``) rows each (the parquet part's row
    groups), built one at a time: ``preds`` None is the argmax of ``logits``. Arrays may be
    memory-mapped (``records.row_chunks`` reads them)."""
    rows = rows or PREDICTION_ROWS
    columns = (ids, groups, labels, logits) + (() if preds is None else (preds,))
    for chunks in zip(*(row_chunks(c, rows) for c in columns)):  # mapped pages go back after each
        part = [c for _, c in chunks]
        pred = part[3].argmax(axis=1) if preds is None else part[4]
        yield predictions_table(job, part[0], part[1], part[2], pred, part[3])


def predictions_table(job: Job, ids, groups, labels, preds, logits: np.ndarray) -> "pa.Table":
    """One job's predictions rows as an arrow table of :func:`layout.predictions_schema`."""
    import pyarrow as pa

    values = np.ascontiguousarray(logits, dtype=np.float32)
    n, k = values.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(k))
    columns = {
        "id": pa.array(np.asarray(ids).astype(str).tolist(), pa.string()),
        "group": pa.array(np.asarray(groups).astype(str).tolist(), pa.string()),
        "label": pa.array(np.asarray(labels, dtype=np.int64)),
        "variant": pa.array([job[0]] * n, pa.string()),
        "target": pa.array([job[1]] * n, pa.string()),
        "delegate": pa.array([job[2]] * n, pa.string()),
        "pred": pa.array(np.asarray(preds, dtype=np.int64)),
        "logits": pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), pa.float32())),
    }
    return pa.table(columns, schema=layout.predictions_schema())


def placement_frame(rows: Iterable[Mapping[str, Any]]) -> "pd.DataFrame":
    """Placement rows as a frame of ``layout.placement_columns()``, sorted by job (stable)."""
    import pandas as pd

    columns = layout.placement_columns()
    frame = pd.DataFrame(list(rows), columns=list(columns))
    return frame.astype(columns).sort_values(list(JOB_KEYS), kind="mergesort")


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """:func:`harness.fsutil.atomic_write` raising ResultsError (the run directory's error)."""
    _atomic_write(path, write, error=ResultsError)


def write_json(path: Path, obj: Any) -> None:
    text = dumps_json(obj)
    atomic_write(path, lambda p: p.write_text(text))


def write_csv(path: Path, frame: "pd.DataFrame") -> None:
    atomic_write(path, lambda p: frame.to_csv(p, index=False))


def write_parquet(path: Path, tables: "pa.Table | Iterable[pa.Table]") -> None:
    """A table, or tables of one schema written one after the other (a row group or more each, so
    a large job's rows are never one table in memory), as one parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = {layout.PARQUET_SCHEMA_KEY: str(SCHEMA_VERSION).encode()}
    if isinstance(tables, pa.Table):
        table = tables.replace_schema_metadata(metadata)
        atomic_write(path, lambda p: pq.write_table(table, p))
        return

    def write(p: Path) -> None:
        writer = None
        try:
            for table in tables:
                table = table.replace_schema_metadata(metadata)
                writer = writer or pq.ParquetWriter(p, table.schema)
                writer.write_table(table)
                del table
                pa.default_memory_pool().release_unused()  # arrow's allocator would keep each row group's pages
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ResultsError(f"no rows to write to {path}")
    atomic_write(path, write)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stored_reference(path: Path, outputs: str) -> Logits:
    """The reference rows of the predictions part ``path`` (ids and logits, in stored order)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["id", "logits"])
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read the stored reference rows {path}: {exc}") from exc
    n = table.num_rows
    flat = pc.list_flatten(table.column("logits")).to_numpy(zero_copy_only=False)
    values = np.asarray(flat, dtype=np.float32).reshape(n, -1) if n else np.zeros((0, 0), np.float32)
    ids = np.asarray(table.column("id").to_numpy(zero_copy_only=False)).astype(str)
    return Logits(ids=ids, values=values, outputs=outputs)
