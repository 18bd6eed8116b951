"""The light reader of a run directory: what ``qskew signoff`` judges, without pandas or pyarrow.

Sign-off needs a run's manifest, its jobs' summary entries, the test set's group sizes and each
finished job's paired cell counts per group (``harness.metrics.cells``), and all of them are in the
run's JSON and CSV files: a job's cells follow exactly from its stored metrics rows
(``cells_from_rates``: n and rates that are counts / n), the group sizes from the manifest's
``dataset.group_counts.test``. :func:`read_light` reads them with ``json`` and ``csv`` alone.

It returns None for a run it cannot judge that way, and the caller reads it in full (``read_run``,
which recomputes the cells from the stored logits): a schema-1 run (one whole metrics file), a
manifest without the test set's group counts (runs written by hand or by older code), a finished
job whose groups or group sizes are not the manifest's, or finished jobs that were not all scored
against the same reference outputs (a group's reference columns, :data:`REFERENCE_COLUMNS`, differ
between jobs: a resumed session whose reference was computed again, on another host or runtime,
and moved a near tie). The stored reference rows, which ``read_run`` compares every job with, are
then the only common reference. A file that is missing, unreadable or of a newer schema is the same
ResultsError as ``read_run``'s; so is a metrics row whose rates are no counts, or a group's second row.

Example::

    run = read_light(Path("runs/demo"))      # None: use read_run(Path("runs/demo"))
    run.cells[0].counts                      # (groups, 5) cell counts of the first job's groups
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import ResultsError
from harness.metrics.attributes import Attributes, group_sizes
from harness.metrics.cells import CELLS, GroupCells, cells_from_rates
from harness.metrics.names import OVERALL
from harness.rundir import layout
from harness.rundir.layout import JOB_KEYS, SCHEMA_VERSION, Job
from harness.rundir.reader import SummaryPart, part_file, read_json, summary_parts

_RATES = ("n", "acc_ref", "acc", "flip_rate", "flip_right_to_wrong", "flip_wrong_to_right")
# A group's columns that depend on the reference outputs alone: the same text in every job's metrics
# when every job was scored against the same reference (same inputs, same code, same bits).
REFERENCE_COLUMNS = ("n", "acc_ref", "loss_ref", "logit_var_ref", "margin_ref")


@dataclass(frozen=True, eq=False)
class LightRun:
    """What sign-off judges of a run directory (the parts of ``RunData`` it uses, plus the cells)."""

    path: Path
    manifest: dict
    summary: dict                   # {"schema_version": int, "runs": [entry, ...]} in finishing order
    cells: tuple[GroupCells, ...]   # jobs sorted, each job's attributes in the run's order
    sizes: dict[tuple[str, str], int]

    @property
    def attributes(self) -> Attributes:
        return Attributes.from_json(self.manifest.get("dataset"))

    def jobs(self, status: str = "ok") -> list[Job]:
        """(variant, target, delegate) of the summary entries with ``status``, in finishing order."""
        return [tuple(r[k] for k in JOB_KEYS) for r in self.summary["runs"] if r["status"] == status]

    def test_group_sizes(self) -> dict[tuple[str, str], int]:
        """Samples per (attribute, group) in the test set, as ``RunData.test_group_sizes``."""
        return dict(self.sizes)


def read_light(run_dir: Path) -> LightRun | None:
    """The run's :class:`LightRun`, or None when it must be read in full (see the module docstring)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist")
    manifest = read_json(run_dir / layout.MANIFEST_FILE, required=True)
    if manifest["schema_version"] == layout.SCHEMA1:
        return None
    for kind in layout.PART_DIRS:
        if not (run_dir / kind).is_dir():
            raise ResultsError(f"run directory folder {run_dir / kind} is missing")
    parts = summary_parts(run_dir)
    counts = ((manifest.get("dataset") or {}).get("group_counts") or {}).get("test")
    if not isinstance(counts, dict) or not counts:
        return None
    attrs = Attributes.from_json(manifest.get("dataset"))
    sizes = group_sizes(counts, attrs)
    cells, references = [], []
    for part in sorted((p for p in parts if p.entry["status"] == "ok"), key=lambda p: p.job):
        job_cells, reference = _job_cells(run_dir, part, attrs)
        if {(c.attribute, g): int(n) for c in job_cells for g, n in zip(c.names, c.counts.sum(axis=1))} != sizes:
            return None   # not the manifest's test set: the reference rows decide (read_run)
        if references and reference != references[0]:
            return None   # scored against another reference: the stored reference rows decide (read_run)
        cells.extend(job_cells)
        references.append(reference)
    return LightRun(path=run_dir, manifest=manifest, summary={"schema_version": SCHEMA_VERSION,
                    "runs": [p.entry for p in parts]}, cells=tuple(cells), sizes=sizes)


def _job_cells(run_dir: Path, part: SummaryPart, attrs: Attributes) -> tuple[list[GroupCells], dict]:
    """One finished job's cells per attribute (attributes in the run's order, groups sorted) and its
    groups' :data:`REFERENCE_COLUMNS` as stored."""
    path = part_file(run_dir, layout.METRICS_DIR, part)
    by_attribute: dict[str, dict[str, np.ndarray]] = {}
    reference, lines = {}, {}
    for i, row in enumerate(_metrics_rows(path), start=2):
        if row["scope"] == OVERALL:
            continue
        key = row["attribute"], row["group"]
        if key in lines:   # a hand-edited file: which of the two rows would be the job's?
            raise ResultsError(f"{path} line {i}: {key[0]} {key[1]!r} has a row already (line {lines[key]})")
        lines[key], reference[key] = i, tuple(row[c] for c in REFERENCE_COLUMNS)
        try:
            cells = cells_from_rates(*(_number(row, c) for c in _RATES))
        except ValueError as exc:
            raise ResultsError(f"{path} line {i} ({row['attribute']} {row['group']!r}): {exc}") from exc
        by_attribute.setdefault(row["attribute"], {})[row["group"]] = cells
    order = {name: i for i, name in enumerate(attrs.reported)}
    out = []
    for attribute in sorted(by_attribute, key=lambda a: (order.get(a, len(order)), a)):
        groups = by_attribute[attribute]
        names = tuple(sorted(groups))
        counts = np.array([groups[g] for g in names], dtype=np.int64).reshape(len(names), len(CELLS))
        out.append(GroupCells(part.job, attribute, names, counts))
    return out, reference


def _number(row: dict[str, str], column: str) -> float | int:
    """``row[column]`` as the number it stores (n an integer); ValueError naming the column."""
    try:
        return int(row[column]) if column == "n" else float(row[column])
    except ValueError:
        kind = "an integer" if column == "n" else "a number"
        raise ValueError(f"{column}={row[column]!r} is not {kind}") from None


def _metrics_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics part as strings; ResultsError unless its header is the stored columns
    (or, before schema 3, those without ``attribute``: then attribute "group", "" overall)."""
    stored = list(layout.metrics_columns(stored=True))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:   # a BOM, as pandas (read_run) reads it
            reader = csv.reader(f)
            header = next(reader, [])
            table = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    if any(len(values) != len(header) for values in table):
        raise ResultsError(f"cannot read {path}: a row has not the {len(header)} fields of its header")
    rows = [dict(zip(header, values)) for values in table]
    if header == list(layout.without_attribute(dict.fromkeys(stored))):
        rows = [{**r, "attribute": "" if r["scope"] == OVERALL else "group"} for r in rows]
    elif header != stored:
        raise ResultsError(f"{path} has columns {header}; expected {stored}")
    return rows

