"""Read a run directory (schema 2, or the whole-file schema 1 of older runs) into typed frames.

Report, signoff, compare and the other readers of a run go through :func:`read_run`; the file and
column names come from :mod:`harness.rundir.layout`. A file of a newer schema than this qskew's is
refused with a ResultsError that names it and both versions.

Example::

    run = read_run(Path("runs/demo"))
    run.metrics[run.metrics.scope == "group"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from harness.errors import ResultsError
from harness.records import DeviceRun, Logits
from harness.rundir import layout
from harness.rundir.layout import JOB_KEYS, REFERENCE_JOB, SCHEMA_VERSION, Job

if TYPE_CHECKING:  # pandas/pyarrow are imported lazily: the CLI imports this module at start-up
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything in a run directory, as read by :func:`read_run` (columns: ``harness.rundir.layout``)."""

    path: Path
    manifest: dict
    predictions: "pd.DataFrame"   # reference rows first, then the jobs in finishing order
    metrics: "pd.DataFrame"       # with the attribution columns, sorted by job
    summary: dict                 # {"schema_version": int, "runs": [entry, ...]} in finishing order
    placement: "pd.DataFrame | None" = None   # None for schema-1 runs written before placement.csv

    @property
    def attributes(self):
        """The run's group attributes (``harness.metrics.attributes.Attributes``), from its manifest."""
        from harness.metrics.attributes import Attributes

        return Attributes.from_json(self.manifest.get("dataset"))

    def jobs(self, status: str = "ok") -> list[Job]:
        """(variant, target, delegate) of the summary entries with ``status``, in finishing order."""
        return [tuple(r[k] for k in JOB_KEYS) for r in self.summary["runs"] if r["status"] == status]

    def logits(self, variant: str, target: str, delegate: str) -> Logits:
        """The logits of one job (or of ``REFERENCE_JOB``), rows in stored order."""
        rows = self._rows((variant, target, delegate))
        values = np.stack(rows["logits"].to_list()).astype(np.float32) if len(rows) else np.zeros((0, 0), np.float32)
        return Logits(ids=rows["id"].to_numpy().astype(str), values=values)

    def test_group_sizes(self) -> dict[tuple[str, str], int]:
        """Samples per (attribute, group) in the test set (its reference rows)."""
        from harness.metrics.attributes import cell_sizes

        return cell_sizes(self.test_set()["group"].to_numpy(), self.attributes)

    def test_set(self) -> "pd.DataFrame":
        """The test samples as the reference rows hold them: columns id, group, label (stored order)."""
        return self._rows(REFERENCE_JOB)[["id", "group", "label"]]

    def per_sample(self, variant: str, target: str, delegate: str) -> "pd.DataFrame":
        """Recompute ``compare.per_sample`` for one job from the stored logits (for CIs, tests...)."""
        from harness.metrics.compare import compare_samples

        ref = self.logits(*REFERENCE_JOB)
        ref = Logits(ids=ref.ids, values=ref.values, outputs=self.manifest.get("model", {}).get("outputs", "logits"))
        if not len(ref.ids):
            raise ResultsError(f"{self.path} holds no reference rows")
        job = self._rows((variant, target, delegate))
        values = self.logits(variant, target, delegate).values.reshape(len(job), ref.values.shape[1])
        run = DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256=None, logits=values)
        name = str(self.manifest.get("dataset", {}).get("name", self.path.name))
        return compare_samples(ref, run, job["id"].to_numpy(), job["group"].to_numpy(), job["label"].to_numpy(),
                               dataset=name)

    def _rows(self, job: Job) -> "pd.DataFrame":
        p = self.predictions
        mask = (p["variant"] == job[0]) & (p["target"] == job[1]) & (p["delegate"] == job[2])
        return p[mask].reset_index(drop=True)


@dataclass(frozen=True)
class SummaryPart:
    """One job's newest summary part: where its parts live and what it says."""

    seq: int
    key: str
    entry: dict

    @property
    def job(self) -> Job:
        return tuple(self.entry[k] for k in JOB_KEYS)


def read_run(run_dir: Path) -> RunData:
    """Read a run directory; ResultsError names the missing or unreadable file, or a newer schema.

    Example::

        run = read_run(Path("runs/demo"))
        run.metrics[run.metrics.scope == "group"]
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist")
    manifest = read_json(run_dir / layout.MANIFEST_FILE, required=True)
    if manifest["schema_version"] == layout.SCHEMA1:
        return read_schema1(run_dir, manifest, required=True)
    for kind in layout.PART_DIRS:
        if not (run_dir / kind).is_dir():
            raise ResultsError(f"run directory folder {run_dir / kind} is missing")
    parts = summary_parts(run_dir)
    done = [p for p in parts if p.entry["status"] == "ok"]
    ref = layout.part_path(run_dir, layout.PREDICTIONS_DIR, layout.REFERENCE_SEQ, layout.job_key(REFERENCE_JOB))
    files = ([ref] if ref.exists() else []) + [part_file(run_dir, layout.PREDICTIONS_DIR, p) for p in done]
    stored = layout.metrics_columns(stored=True)
    metrics = [read_metrics_csv(part_file(run_dir, layout.METRICS_DIR, p), stored) for p in done]
    placement = [read_typed_csv(path, layout.placement_columns()) for p in done
                 if (path := layout.part_path(run_dir, layout.PLACEMENT_DIR, p.seq, p.key)).exists()]
    predictions = read_predictions(files).to_pandas()
    return RunData(path=run_dir, manifest=manifest, predictions=predictions,
                   metrics=_cross_job(metrics, predictions, manifest), placement=_sorted_placement(placement),
                   summary={"schema_version": SCHEMA_VERSION, "runs": [p.entry for p in parts]})


def summary_parts(run_dir: Path) -> list[SummaryPart]:
    """The newest summary part of every job in ``run_dir/summary``, in finishing (seq) order."""
    newest: dict[str, SummaryPart] = {}
    for path in sorted((Path(run_dir) / layout.SUMMARY_DIR).iterdir()):
        name = layout.parse_part(path)
        if name is None:
            continue
        data = read_json(path, required=True)
        entry = data.get("run")
        if not isinstance(entry, dict) or any(k not in entry for k in JOB_KEYS + ("status",)):
            raise ResultsError(f"{path} holds no job summary ('run' with {', '.join(JOB_KEYS)}, status)")
        part = SummaryPart(seq=name[0], key=name[1], entry=entry)
        if layout.job_key(part.job) != part.key:
            raise ResultsError(f"{path} holds job {'/'.join(part.job)}, not the job its name is for")
        if part.key not in newest or newest[part.key].seq < part.seq:
            newest[part.key] = part
    return sorted(newest.values(), key=lambda p: p.seq)


def read_predictions(files: list[Path]) -> "pa.Table":
    """The predictions parts ``files`` read as one pyarrow dataset, rows in file order."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = layout.predictions_schema()
    if not files:
        return schema.empty_table()
    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        for fragment in dataset.get_fragments():
            version = (fragment.physical_schema.metadata or {}).get(layout.PARQUET_SCHEMA_KEY)
            check_schema(int(version) if version else None, Path(fragment.path))
        table = dataset.to_table()
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"cannot read the predictions parts {files[0].parent}: {exc}") from exc
    return table.select(schema.names).cast(schema)


def read_schema1(run_dir: Path, manifest: dict, required: bool) -> RunData:
    """An older run's whole files; with ``required`` False (converting) missing files count as empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    summary = read_json(run_dir / layout.SUMMARY_FILE, required, default={"schema_version": 1, "runs": []})
    if not isinstance(summary.get("runs"), list):
        raise ResultsError(f"{run_dir / layout.SUMMARY_FILE} has no 'runs' list")
    path = run_dir / layout.PREDICTIONS_FILE
    table = layout.predictions_schema().empty_table()
    if path.exists():
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise ResultsError(f"cannot read {path}: {exc}") from exc
        version = (table.schema.metadata or {}).get(layout.PARQUET_SCHEMA_KEY)
        check_schema(int(version) if version else None, path)
        table = table.select(layout.predictions_schema().names).cast(layout.predictions_schema())
    elif required:
        raise ResultsError(f"run directory file {path} is missing")
    placement = run_dir / layout.PLACEMENT_FILE
    predictions = table.to_pandas()
    metrics = _read_schema1_metrics(run_dir / layout.METRICS_FILE, required)
    return RunData(path=run_dir, manifest=manifest, predictions=predictions,
                   metrics=_cross_job(metrics, predictions, manifest), summary=summary,
                   placement=read_typed_csv(placement, layout.placement_columns()) if placement.exists() else None)


def read_signoff(run_dir: Path) -> dict:
    """The verdict last written by ``writer.write_signoff``; ResultsError if there is none."""
    return read_json(Path(run_dir) / layout.SIGNOFF_FILE, required=True)


def read_json(path: Path, required: bool, default: dict | None = None) -> dict:
    """A JSON object file of the run directory with an integer schema_version not newer than ours."""
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
    check_schema(data.get("schema_version"), path)
    return data


def read_typed_csv(path: Path, columns: Mapping[str, str]) -> "pd.DataFrame":
    """A CSV of the run directory with exactly ``columns`` (name -> dtype); empty cells of float
    columns read as NaN, of string columns as "". ResultsError if unreadable or other columns."""
    import pandas as pd

    floats = [c for c, t in columns.items() if t == "float64"]
    try:
        table = pd.read_csv(path, dtype=dict(columns), keep_default_na=False, engine=layout.CSV_ENGINE,
                            na_values={c: ["", "NaN", "nan"] for c in floats})
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    if list(table.columns) != list(columns):
        raise ResultsError(f"{path} has columns {list(table.columns)}; expected {list(columns)}")
    return table


def read_metrics_csv(path: Path, columns: dict[str, str]) -> "pd.DataFrame":
    """A metrics file or part with ``columns``; one written before schema 3 (no ``attribute``
    column) gets attribute "group" ("" on overall rows)."""
    try:
        return read_typed_csv(path, columns)
    except ResultsError as first:
        try:
            table = read_typed_csv(path, layout.without_attribute(columns))
        except ResultsError:
            raise first from None
    table.insert(table.columns.get_loc("scope") + 1, "attribute",
                 np.where(table["scope"] == "overall", "", "group"))
    return table


def check_schema(version, path: Path) -> None:
    """ResultsError unless ``version`` is an int no newer than SCHEMA_VERSION (names the file)."""
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsError(f"{path} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{path} has schema_version {version}, newer than this qskew's "
                           f"{SCHEMA_VERSION}; upgrade qskew to read it")


def part_file(run_dir: Path, kind: str, part: SummaryPart) -> Path:
    """The part of ``kind`` of a finished job; ResultsError if it is missing."""
    path = layout.part_path(run_dir, kind, part.seq, part.key)
    if not path.exists():
        raise ResultsError(f"run directory part {path} is missing (job {'/'.join(part.job)} is marked finished)")
    return path


def _cross_job(parts: list["pd.DataFrame"], predictions: "pd.DataFrame", manifest: dict) -> "pd.DataFrame":
    """The jobs' stored metrics as one table, sorted, with the columns computed across jobs: the drop
    attribution (from the accuracies) and the step columns (from the predictions)."""
    import pandas as pd

    from harness.metrics.attributes import Attributes
    from harness.metrics.groups import attribute_drops, sort_metrics
    from harness.metrics.steps import fill_step_columns, manifest_output_scales

    columns = layout.metrics_columns()
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    table = pd.concat(parts, ignore_index=True).assign(**{c: np.nan for c in layout.CROSS_JOB_COLUMNS})
    table = attribute_drops(sort_metrics(table[list(columns)].astype(columns)))
    return fill_step_columns(table, predictions, manifest_output_scales(manifest),
                             Attributes.from_json(manifest.get("dataset")))


def _sorted_placement(parts: list["pd.DataFrame"]) -> "pd.DataFrame":
    import pandas as pd

    columns = layout.placement_columns()
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    table = pd.concat(parts, ignore_index=True).sort_values(list(JOB_KEYS), kind="mergesort")
    return table.reset_index(drop=True)


def _read_schema1_metrics(path: Path, required: bool) -> list["pd.DataFrame"]:
    """A schema-1 metrics.csv without its cross-job columns (they are computed again when read),
    written with or without the attribution columns; [] when absent and not ``required``."""
    if not path.exists():
        if required:
            raise ResultsError(f"run directory file {path} is missing")
        return []
    try:
        table = read_metrics_csv(path, layout.metrics_columns(stored=True))
    except ResultsError as first:  # written after the drop attribution columns existed?
        try:
            table = read_metrics_csv(path, layout.schema1_metrics_columns())
        except ResultsError:
            raise first from None
    return [table.drop(columns=[c for c in layout.ATTRIBUTION_COLUMNS if c in table])]
