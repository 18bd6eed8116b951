"""The run directory: the one writer (:class:`RunWriter`) and reader (:func:`read_run`) of its files.

No other module knows these file names; report, signoff and compare read through :func:`read_run`.
Every file is rewritten atomically (temporary file in the same folder, fsync, ``os.replace``) after
each job, so a crash later in a sweep loses nothing already computed, and a reader never sees a
half-written file. The writer rewrites ``predictions.parquet``, then ``metrics.csv``, then
``summary.json``: a job counts as finished only once ``summary.json`` lists it with status "ok".

Run directory layout (schema version 1)
=======================================

``manifest.json`` -- what was run, written once at the start (rewritten on resume)::

    schema_version   int     version of this layout (SCHEMA_VERSION); readers refuse newer ones
    created          str     ISO 8601 UTC time the run directory was first written
    updated          str     ISO 8601 UTC time the manifest was last written (differs after a resume)
    config_hash      str     sha256 of the canonical JSON of {config without [run] targets and
                             devices_file, dataset.sha256, model.sha256}; a resume into the same
                             folder must have the same hash (it may select other devices)
    ...              any     everything the caller passed (``evaluate`` writes: config -- the
                             experiment as JSON; versions -- qskew, protocol, python and library
                             versions; dataset -- name, sha256, description, num_classes,
                             preprocess, group_counts per split; model -- source, name/path, seed,
                             sha256; calibration -- size, strategy, seed, group_shares, sha256 or
                             null; variants -- one ModelArtifact.to_json() per variant; targets --
                             device properties and inventory entry per device name, kept
                             for every device of earlier sessions too)

``predictions.parquet`` -- one row per test sample x job, plus the reference rows::

    id        string         sample id (unique within a job)
    group     string         the sample's group label
    label     int64          true class
    variant   string         variant name; "reference" for the FP32 Keras model on the host
    target    string         device name; "host" for the reference
    delegate  string         delegate spec as requested; "keras" for the reference
    pred      int64          argmax of the logits (first index on ties)
    logits    list<float32>  the K logits (dequantized for integer outputs)

    Rows of one job are in test-set order; the reference rows come first. The parquet schema
    metadata holds ``qskew_schema_version``. Joining a job's rows to the reference rows on ``id``
    reproduces metrics.csv exactly (``RunData.per_sample`` does this).

``placement.csv`` -- which ops of each job ran on the delegate and which on the CPU, as far as
the runtime can tell (columns and sources: ``harness.placement``). Run directories written before
it existed have none (``RunData.placement`` is None).

``metrics.csv`` -- one row per job x group plus one overall row per job; columns, in order
(definitions in ``harness.metrics.groups``; all rates are fractions in [0, 1], losses in nats)::

    variant, target, delegate   the job
    scope                       "overall" or "group"
    group                       group label; empty on the overall row
    n                           number of samples
    small_group                 True when n < 100 (too few samples to read the numbers alone)
    acc_ref, acc                accuracy of the FP32 reference / of the variant
    acc_drop                    acc_ref - acc; positive means the variant is worse
    drop_quantization           acc_ref - accuracy of the same variant on the CPU reference
                                kernels (this device's reference-kernel job, else another
                                device's); NaN when the run has no reference-kernel job of it
    drop_delegate               acc_drop - drop_quantization: what the delegate adds on top
    loss_ref, loss, excess_loss mean cross-entropy of the reference / the variant; loss - loss_ref
    logit_var_ref, logit_var    mean per-sample variance of the logits across classes (ddof 0)
    margin_ref, margin          mean of z_label - max_{k != label} z_k
    flip_rate                   share of samples whose predicted class changed
    flip_right_to_wrong         share the reference got right and the variant wrong
    flip_wrong_to_right         share the reference got wrong and the variant right
    kl                          mean KL(p_ref || p_variant), nats
    logit_mse                   mean over samples of the mean squared logit difference
    psi                         group acc_drop - overall acc_drop; empty (NaN) on overall rows

    Rows are ordered by (variant, target, delegate), the overall row first, then groups by name.
    Floats are written with full round-trip precision. Failed jobs have no rows.

``summary.json`` -- ``{"schema_version": int, "runs": [entry, ...]}``, one entry per job in the
order the jobs finished; every entry has every key (null where it does not apply)::

    variant, target, delegate   the job
    status                      "ok" or "failed"
    stage                       where a failed job failed: "convert", "profile" (the device's
                                profile refused the variant), "prepare" (the model the device
                                needs could not be made), "run"; null when ok
    error                       the error message of a failed job; null when ok
    artifact_sha256             sha256 of the .tflite file that ran
    runtime, runtime_version    the TFLite runtime the runner used (e.g. "ai_edge_litert", "2.3.0")
    delegate_applied            the delegate the runtime actually applied
    batch_size                  batch size the runner used
    latency_ms_per_sample       invoke time per sample in ms: timings.latency_ms_per_sample, else
                                sum(timings.per_batch_s) / n * 1000; null when unknown or failed
    timings                     the job's timings in seconds (object): the runner's invoke_s,
                                per_batch_s, total_s... plus the host's host_*_s
    transfer                    what the host moved for the job (object): bytes_pushed,
                                bytes_pulled, push_s, run_s, pull_s, pushed (bytes by kind:
                                runner, inputs, model, job; 0 when the device had it already)
    repeat                      null for a job run once; with [run] repeat = N > 1 the device's
                                run-to-run noise (object; harness.metrics.noise): runs, failed,
                                identical, max_abs_logit_diff, flip_rate_max,
                                latency_ms_per_sample (list), latency_ms_median/min/max,
                                latency_rel_spread
    n, acc_ref, acc             overall sample count and accuracies
    overall_drop                overall acc_drop
    worst_group, worst_group_drop   group with the largest acc_drop, and that drop
    best_group, best_group_drop     group with the smallest acc_drop, and that drop
    drop_gap                    worst_group_drop - best_group_drop
    psi, psi_group              largest psi (group drop minus overall drop) and its group
    excess_loss_gap             max - min group excess loss (Liu/Tran's phi)
    acc_gap_ref, acc_gap        max - min group accuracy, reference / variant
    small_groups                comma-separated groups with n < 100 ("" if none)

Written later by the commands that read a run (never by RunWriter, which ignores them):
``signoff.json`` -- the last ``qskew signoff`` verdict (``{"schema_version", "verdict", "policy",
"rules": [...]}``, fields documented in ``harness.signoff``), ``signoff-junit.xml`` -- the same
verdict as JUnit XML, and ``report/`` -- the HTML report and its PNG charts (``harness.report``).

Example::

    writer = RunWriter(Path("runs/demo"), resume=True)
    writer.write_manifest({"config": exp.to_json()})
    writer.add_reference(ref, test)
    writer.add_run(device_run, ref, test)
    print(format_table(read_run(Path("runs/demo")).metrics))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from harness.errors import ResultsError
from harness.fsutil import atomic_write as _atomic_write, dumps_json, jsonable
from harness.records import DeviceRun, GroupedDataset, Logits

if TYPE_CHECKING:  # pandas/pyarrow are imported lazily: the CLI imports this module at start-up
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 1

MANIFEST_FILE = "manifest.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
PLACEMENT_FILE = "placement.csv"  # optional: runs written before it existed have none
FILES = (MANIFEST_FILE, PREDICTIONS_FILE, METRICS_FILE, SUMMARY_FILE)
OPTIONAL_FILES = (PLACEMENT_FILE,)  # written by every writer now; absent from older run directories
# Outputs of the commands that read a run (not part of the run itself; RunWriter ignores them).
SIGNOFF_FILE = "signoff.json"   # the last `qskew signoff` verdict
SIGNOFF_JUNIT_FILE = "signoff-junit.xml"  # its JUnit XML when --junit names no other file
ANALYSIS_FILE = "analysis.csv"            # `qskew analyze`: per model x group curvature (harness.analysis.tables)
LAYERS_FILE = "layers.csv"                # `qskew analyze`: per variant x layer x group error
SUGGESTION_FILE = "suggested-mixed.json"  # `qskew suggest-mixed`: the recipe, in its new run directory
DELEGATES_FILE = "delegates.csv"          # `qskew compare-delegates`: its table (harness.delegate_compare)
REPORT_DIR = "report"           # `qskew report`: the HTML page and its PNG charts

REFERENCE_JOB = ("reference", "host", "keras")  # (variant, target, delegate) of the FP32 reference rows
JOB_KEYS = ("variant", "target", "delegate")
PARQUET_SCHEMA_KEY = b"qskew_schema_version"
CSV_ENGINE = "python"  # parses floats with float(): exact round trip (the C parser can be 1 ulp off)

Job = tuple[str, str, str]
ATTRIBUTION_COLUMNS = ("drop_quantization", "drop_delegate")  # metrics.csv columns added later in schema 1


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything in a run directory, as read by :func:`read_run`."""

    path: Path
    manifest: dict
    predictions: "pd.DataFrame"
    metrics: "pd.DataFrame"
    summary: dict
    placement: "pd.DataFrame | None" = None   # placement.csv; None for runs written before it

    def jobs(self, status: str = "ok") -> list[Job]:
        """(variant, target, delegate) of the summary entries with ``status``, in file order."""
        return [tuple(r[k] for k in JOB_KEYS) for r in self.summary["runs"] if r["status"] == status]

    def logits(self, variant: str, target: str, delegate: str) -> Logits:
        """The logits of one job (or of ``REFERENCE_JOB``), rows in stored order."""
        rows = self._rows((variant, target, delegate))
        values = np.stack(rows["logits"].to_list()).astype(np.float32) if len(rows) else np.zeros((0, 0), np.float32)
        return Logits(ids=rows["id"].to_numpy().astype(str), values=values)

    def test_set(self) -> "pd.DataFrame":
        """The test samples as the reference rows hold them: columns id, group, label (stored order)."""
        return self._rows(REFERENCE_JOB)[["id", "group", "label"]]

    def per_sample(self, variant: str, target: str, delegate: str) -> "pd.DataFrame":
        """Recompute ``compare.per_sample`` for one job from the stored logits (for CIs, tests...)."""
        from harness.metrics.compare import per_sample

        ref_rows = self._rows(REFERENCE_JOB)
        if ref_rows.empty:
            raise ResultsError(f"{self.path / PREDICTIONS_FILE} holds no reference rows")
        job = self._rows((variant, target, delegate))
        ref = self.logits(*REFERENCE_JOB)
        num_classes = ref.values.shape[1]
        test = GroupedDataset(
            name=str(self.manifest.get("dataset", {}).get("name", self.path.name)),
            ids=job["id"].to_numpy().astype(str), x=np.zeros((len(job), 0), np.uint8),
            y=job["label"].to_numpy().astype(np.int64), group=job["group"].to_numpy().astype(str),
            split=np.full(len(job), "test"), num_classes=num_classes)
        values = self.logits(variant, target, delegate).values.reshape(len(job), num_classes)
        run = DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256=None, logits=values)
        return per_sample(ref, run, test)

    def _rows(self, job: Job) -> "pd.DataFrame":
        p = self.predictions
        mask = (p["variant"] == job[0]) & (p["target"] == job[1]) & (p["delegate"] == job[2])
        return p[mask].reset_index(drop=True)


class RunWriter:
    """Writes a run directory job by job; every ``add_*`` leaves complete files on disk.

    ``resume=False`` refuses a folder that already holds a run; ``resume=True`` loads what is
    there (dropping rows of jobs that never reached summary.json) so finished jobs can be skipped
    via :meth:`completed_jobs`. Adding a job that is already present replaces it.
    """

    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = Path(run_dir)
        existing = [name for name in FILES if (self.run_dir / name).exists()]
        if existing and not resume:
            raise ResultsError(f"{self.run_dir} already holds a run ({', '.join(existing)}); "
                               f"resume it or choose another folder")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create run directory {self.run_dir}: {exc}") from exc
        self._manifest: dict | None = None
        self._predictions = _empty_predictions()
        self._metrics = _empty_metrics()
        self._placement: list[dict] = []
        self._runs: list[dict] = []
        if existing:
            self._load()

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write manifest.json (adds schema_version, created, updated, config_hash)."""
        now = _now()
        new = {**jsonable(dict(manifest)), "schema_version": SCHEMA_VERSION, "created": now, "updated": now,
               "config_hash": config_hash(manifest)}
        if self._manifest is not None:
            old_hash = self._manifest.get("config_hash")
            if old_hash and old_hash != new["config_hash"]:
                raise ResultsError(f"{self.run_dir / MANIFEST_FILE} was written for another experiment "
                                   f"(config_hash {old_hash[:12]} != {new['config_hash'][:12]}); "
                                   f"use a new run directory")
            new["created"] = self._manifest.get("created", now)
            # devices of earlier sessions keep their facts; a device seen again is updated
            new["targets"] = {**(self._manifest.get("targets") or {}), **(new.get("targets") or {})}
        self._manifest = new
        atomic_write(self.run_dir / MANIFEST_FILE, lambda p: p.write_text(_dumps(new)))
        self._flush()

    def add_reference(self, ref: Logits, test: GroupedDataset) -> None:
        """Store the FP32 reference logits as predictions rows of ``REFERENCE_JOB``."""
        from harness.metrics.compare import align_reference

        values = align_reference(ref, np.asarray(test.ids).astype(str), "reference")
        self._replace_predictions(REFERENCE_JOB, _predictions_table(
            REFERENCE_JOB, test.ids, test.group, test.y, values.argmax(axis=1), values))
        self._flush()

    def add_run(self, run: DeviceRun, ref: Logits, test: GroupedDataset) -> None:
        """Compare a finished job with the reference and store its predictions, metrics and summary.

        A run that failed (``run.ok`` is False) is recorded with :meth:`add_failure`, stage "run".
        """
        from harness.metrics.compare import per_sample
        from harness.metrics.groups import disparity, group_metrics
        from harness.placement import placement_rows

        if not run.ok:
            self.add_failure(run.variant, run.target, run.delegate, run.error or "unknown error", stage="run")
            return
        job = (run.variant, run.target, run.delegate)
        # compute on exactly the float32 values stored, so metrics.csv is reproducible from the file
        ref = Logits(ids=ref.ids, values=np.asarray(ref.values, dtype=np.float32))
        run = replace(run, logits=np.asarray(run.logits, dtype=np.float32))
        frame = per_sample(ref, run, test)
        metrics = group_metrics(frame)
        self._replace_predictions(job, _predictions_table(
            job, frame["id"], frame["group"], frame["label"], frame["pred"], run.logits))
        self._replace_metrics(job, metrics)
        self._replace_placement(job, placement_rows(job, run.execution_plan or {}))
        summary = disparity(metrics).iloc[0].to_dict()
        self._replace_run(_run_entry(run, status="ok") | {k: v for k, v in summary.items() if k not in JOB_KEYS})
        self._flush()

    def add_failure(self, variant: str, target: str, delegate: str, error: str, stage: str) -> None:
        """Record a job that failed at ``stage`` (e.g. "convert", "run"): summary entry only."""
        job = (variant, target, delegate)
        self._replace_predictions(job, None)
        self._replace_metrics(job, None)
        self._replace_placement(job, [])
        failed = DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256=None,
                           logits=None, error=str(error))
        self._replace_run(_run_entry(failed, status="failed", stage=stage))
        self._flush()

    def completed_jobs(self) -> set[Job]:
        """Jobs that finished with status "ok" (a rerun can skip them)."""
        return {tuple(r[k] for k in JOB_KEYS) for r in self._runs if r["status"] == "ok"}

    # -- internals ---------------------------------------------------------------------------

    def _load(self) -> None:
        data, table = _read_parts(self.run_dir, required=False)
        self._manifest = data.manifest or None
        self._runs = list(data.summary.get("runs", []))
        done = self.completed_jobs() | {REFERENCE_JOB}
        self._predictions = table.filter(_job_mask(table, done))
        keep = [tuple(k) in done for k in data.metrics[list(JOB_KEYS)].itertuples(index=False)]
        self._metrics = data.metrics[np.asarray(keep, dtype=bool)].reset_index(drop=True)
        if data.placement is not None:
            self._placement = [r for r in data.placement.to_dict("records")
                               if tuple(r[k] for k in JOB_KEYS) in done]

    def _replace_predictions(self, job: Job, table: "pa.Table | None") -> None:
        import pyarrow as pa

        kept = self._predictions.filter(_job_mask(self._predictions, {job}, invert=True))
        parts = [kept] + ([table] if table is not None else [])
        if job == REFERENCE_JOB:
            parts.reverse()  # reference rows first
        self._predictions = pa.concat_tables(parts)

    def _replace_metrics(self, job: Job, metrics: "pd.DataFrame | None") -> None:
        import pandas as pd

        from harness.metrics.groups import attribute_drops, sort_metrics

        m = self._metrics
        other = m[~((m["variant"] == job[0]) & (m["target"] == job[1]) & (m["delegate"] == job[2]))]
        self._metrics = attribute_drops(sort_metrics(
            pd.concat([other, metrics], ignore_index=True) if metrics is not None else other))

    def _replace_placement(self, job: Job, rows: list[dict]) -> None:
        self._placement = [r for r in self._placement if tuple(r[k] for k in JOB_KEYS) != job] + rows

    def _replace_run(self, entry: dict) -> None:
        job = tuple(entry[k] for k in JOB_KEYS)
        self._runs = [r for r in self._runs if tuple(r[k] for k in JOB_KEYS) != job] + [jsonable(entry)]

    def _flush(self) -> None:
        """Rewrite the three data files, summary last (it is what marks a job as finished)."""
        import pyarrow.parquet as pq

        table = self._predictions.replace_schema_metadata({PARQUET_SCHEMA_KEY: str(SCHEMA_VERSION).encode()})
        atomic_write(self.run_dir / PREDICTIONS_FILE, lambda p: pq.write_table(table, p))
        atomic_write(self.run_dir / METRICS_FILE, lambda p: self._metrics.to_csv(p, index=False))
        placement = _placement_frame(self._placement)
        atomic_write(self.run_dir / PLACEMENT_FILE, lambda p: placement.to_csv(p, index=False))
        summary = {"schema_version": SCHEMA_VERSION, "runs": self._runs}
        atomic_write(self.run_dir / SUMMARY_FILE, lambda p: p.write_text(_dumps(summary)))


def read_run(run_dir: Path) -> RunData:
    """Read a run directory; ResultsError names the missing or unreadable file, or a newer schema.

    Example::

        run = read_run(Path("runs/demo"))
        run.metrics[run.metrics.scope == "group"]
    """
    data, _ = _read_parts(Path(run_dir), required=True)
    return data


def _read_parts(run_dir: Path, required: bool) -> "tuple[RunData, pa.Table]":
    """The run directory's contents plus the predictions as an arrow table; with ``required``
    False (resuming) missing files count as empty."""
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist")
    manifest = _read_json(run_dir / MANIFEST_FILE, required, default={})
    summary = _read_json(run_dir / SUMMARY_FILE, required, default={"schema_version": SCHEMA_VERSION, "runs": []})
    table = _read_predictions(run_dir / PREDICTIONS_FILE, required)
    metrics = _read_metrics(run_dir / METRICS_FILE, required)
    placement = _read_placement(run_dir / PLACEMENT_FILE)
    data = RunData(path=run_dir, manifest=manifest, predictions=table.to_pandas(), metrics=metrics,
                   summary=summary, placement=placement)
    return data, table


def report_dir(run_dir: Path) -> Path:
    """Folder inside a run directory where ``qskew report`` writes its page and charts."""
    return Path(run_dir) / REPORT_DIR


def write_signoff(run_dir: Path, verdict: Mapping[str, Any]) -> Path:
    """Write a sign-off verdict (a JSON object) atomically as RUN_DIR/signoff.json; returns the path."""
    path = Path(run_dir) / SIGNOFF_FILE
    atomic_write(path, lambda p: p.write_text(_dumps({"schema_version": SCHEMA_VERSION, **jsonable(verdict)})))
    return path


def signoff_junit_path(run_dir: Path) -> Path:
    """Default place of the sign-off's JUnit XML inside a run directory."""
    return Path(run_dir) / SIGNOFF_JUNIT_FILE


def read_signoff(run_dir: Path) -> dict:
    """The verdict last written by :func:`write_signoff`; ResultsError if there is none."""
    return _read_json(Path(run_dir) / SIGNOFF_FILE, required=True, default={})


DEVICE_KEYS = ("targets", "devices_file")  # [run] keys that choose devices, not what is measured
# Keys added after schema 1 was first written, with the value that means "as before": left out of
# the hash at that value, so a run directory written before they existed can still be resumed.
LATER_DEFAULTS = {("quantize", "fixed_batch"): 0, ("run", "repeat"): 1}


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
        if isinstance(config.get(section), Mapping) and config[section].get(key, default) == default:
            config[section] = {k: v for k, v in config[section].items() if k != key}
    key = {"config": config, "dataset_sha256": dataset.get("sha256"),
           "model_sha256": model.get("sha256")}
    return hashlib.sha256(json.dumps(jsonable(key), sort_keys=True).encode()).hexdigest()


# -- helpers -----------------------------------------------------------------------------------

def _predictions_table(job: Job, ids, groups, labels, preds, logits: np.ndarray) -> "pa.Table":
    import pyarrow as pa

    values = np.ascontiguousarray(logits, dtype=np.float32)
    n, k = values.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(k))
    n_rows = n
    columns = {
        "id": pa.array(np.asarray(ids).astype(str).tolist(), pa.string()),
        "group": pa.array(np.asarray(groups).astype(str).tolist(), pa.string()),
        "label": pa.array(np.asarray(labels, dtype=np.int64)),
        "variant": pa.array([job[0]] * n_rows, pa.string()),
        "target": pa.array([job[1]] * n_rows, pa.string()),
        "delegate": pa.array([job[2]] * n_rows, pa.string()),
        "pred": pa.array(np.asarray(preds, dtype=np.int64)),
        "logits": pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), pa.float32())),
    }
    return pa.table(columns, schema=_predictions_schema())


def _predictions_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("group", pa.string()), ("label", pa.int64()),
                      ("variant", pa.string()), ("target", pa.string()), ("delegate", pa.string()),
                      ("pred", pa.int64()), ("logits", pa.list_(pa.float32()))])


def _empty_predictions() -> "pa.Table":
    return _predictions_schema().empty_table()


def _empty_metrics() -> "pd.DataFrame":
    import pandas as pd

    from harness.metrics.groups import METRIC_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in METRIC_COLUMNS.items()})


def _job_mask(table: "pa.Table", jobs: set[Job], invert: bool = False) -> "pa.ChunkedArray":
    """Rows of ``table`` that belong to one of ``jobs`` (or to none of them with ``invert``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pa.chunked_array([pa.array(np.zeros(table.num_rows, dtype=bool))])
    for job in jobs:
        hit = pc.and_(pc.and_(pc.equal(table.column("variant"), job[0]), pc.equal(table.column("target"), job[1])),
                      pc.equal(table.column("delegate"), job[2]))
        mask = pc.or_(mask, hit)
    return pc.invert(mask) if invert else mask


def _run_entry(run: DeviceRun, status: str, stage: str | None = None) -> dict:
    from harness.metrics.groups import DISPARITY_COLUMNS

    entry = {
        "variant": run.variant, "target": run.target, "delegate": run.delegate, "status": status,
        "stage": stage, "error": run.error, "artifact_sha256": run.artifact_sha256,
        "runtime": run.runtime or None, "runtime_version": run.runtime_version or None,
        "delegate_applied": run.delegate_applied or None, "batch_size": run.batch_size or None,
        "latency_ms_per_sample": run.latency_ms_per_sample(), "timings": dict(run.timings),
        "transfer": dict(run.transfer), "repeat": dict(run.repeats) or None,
    }
    return entry | {k: None for k in DISPARITY_COLUMNS if k not in entry}


def _read_json(path: Path, required: bool, default: dict) -> dict:
    if not path.exists():
        if required:
            raise ResultsError(f"run directory file {path} is missing")
        return default
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{path} does not hold a JSON object")
    _check_schema(data.get("schema_version"), path)
    if path.name == SUMMARY_FILE and not isinstance(data.get("runs"), list):
        raise ResultsError(f"{path} has no 'runs' list")
    return data


def _read_predictions(path: Path, required: bool) -> "pa.Table":
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        if required:
            raise ResultsError(f"run directory file {path} is missing")
        return _empty_predictions()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    version = (table.schema.metadata or {}).get(PARQUET_SCHEMA_KEY)
    _check_schema(int(version) if version else None, path)
    return table.select(_predictions_schema().names).cast(_predictions_schema())


def _read_metrics(path: Path, required: bool) -> "pd.DataFrame":
    from harness.metrics.groups import METRIC_COLUMNS

    if not path.exists():
        if required:
            raise ResultsError(f"run directory file {path} is missing")
        return _empty_metrics()
    try:
        return read_typed_csv(path, METRIC_COLUMNS)
    except ResultsError as first:  # written before the drop attribution columns existed?
        from harness.metrics.groups import attribute_drops

        older = {k: v for k, v in METRIC_COLUMNS.items() if k not in ATTRIBUTION_COLUMNS}
        try:
            table = read_typed_csv(path, older)
        except ResultsError:
            raise first from None
        table = table.assign(**{c: float("nan") for c in ATTRIBUTION_COLUMNS})
        return attribute_drops(table[list(METRIC_COLUMNS)])


def _placement_frame(rows: list[dict]) -> "pd.DataFrame":
    import pandas as pd

    from harness.placement import PLACEMENT_COLUMNS

    frame = pd.DataFrame(rows, columns=list(PLACEMENT_COLUMNS))
    return frame.astype(PLACEMENT_COLUMNS).sort_values(list(JOB_KEYS), kind="mergesort")


def _read_placement(path: Path) -> "pd.DataFrame | None":
    from harness.placement import PLACEMENT_COLUMNS

    return read_typed_csv(path, PLACEMENT_COLUMNS) if path.exists() else None


def read_typed_csv(path: Path, columns: Mapping[str, str]) -> "pd.DataFrame":
    """A CSV of the run directory with exactly ``columns`` (name -> dtype); empty cells of float
    columns read as NaN, of string columns as "". ResultsError if unreadable or other columns."""
    import pandas as pd

    floats = [c for c, t in columns.items() if t == "float64"]
    try:
        table = pd.read_csv(path, dtype=dict(columns), keep_default_na=False, engine=CSV_ENGINE,
                            na_values={c: ["", "NaN", "nan"] for c in floats})
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    if list(table.columns) != list(columns):
        raise ResultsError(f"{path} has columns {list(table.columns)}; expected {list(columns)}")
    return table


def _check_schema(version, path: Path) -> None:
    if not isinstance(version, int):
        raise ResultsError(f"{path} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{path} has schema_version {version}, newer than this qskew's "
                           f"{SCHEMA_VERSION}; upgrade qskew to read it")


def _dumps(obj: Any) -> str:
    return dumps_json(obj)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """:func:`harness.fsutil.atomic_write` raising ResultsError (the run directory's error)."""
    _atomic_write(path, write, error=ResultsError)
