"""One job's disparity numbers as a record (:class:`Disparity`), kept free of pandas.

The metrics stage fills it (``harness.metrics.score.score_job``) and the run directory stores it in
the job's summary entry (``harness.rundir.entry``), which the CLI imports at start-up: so this module
imports no pandas. Its fields are the one list of the disparity numbers; ``groups.DISPARITY_COLUMNS``
is built from them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from harness.fsutil import jsonable


@dataclass(frozen=True, kw_only=True)
class Disparity:
    """One job's disparity numbers: a row of ``groups.disparity`` without the job.

    Its fields, in order, are ``groups.DISPARITY_COLUMNS`` after the job columns (what each means: the
    docstring of :mod:`harness.metrics.groups`); NaN where a job has no groups to compare, "" for a
    group name that does not apply.
    """

    n: int
    acc_ref: float
    acc: float
    overall_drop: float
    worst_group: str
    worst_group_drop: float
    best_group: str
    best_group_drop: float
    drop_gap: float
    psi: float
    psi_group: str
    excess_loss_gap: float
    acc_gap_ref: float
    acc_gap: float
    small_groups: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Disparity":
        """The numbers of one row of ``groups.disparity`` (job columns ignored), as plain Python values."""
        return cls(**{f.name: _PLAIN[f.type](row[f.name]) for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """Every field in field order; NaN as None (JSON has no NaN)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


# a field's annotation -> the plain Python type of its value, and the dtype of its column
_PLAIN = {"int": int, "float": float, "str": str}
_DTYPES = {"int": "int64", "float": "float64", "str": "str"}

# Disparity's fields and their dtypes: groups.DISPARITY_COLUMNS after the job columns
DISPARITY_DTYPES: dict[str, str] = {f.name: _DTYPES[f.type] for f in fields(Disparity)}
