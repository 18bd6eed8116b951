"""Statistics behind a sign-off: intervals, paired tests and small-sample warnings (reference §6).

Every statistic here is a function of each group's paired cell counts (``harness.metrics.cells``):
:func:`cell_stats` computes them all from the cells, which come from a per-sample frame
(:func:`compute_stats`, :func:`run_stats`: ``qskew report``, ``mitigate``, ``suggest-mixed``) or from
a run's stored metrics rows (``qskew signoff``, without pandas); the same cells give the same
numbers. Nothing statistical is written into the run directory.

* **Wilson intervals** for each group's accuracy under the reference and the variant
  (``statsmodels.stats.proportion.proportion_confint(method="wilson")``).
* **Paired, group-stratified bootstrap** percentile intervals for each group's accuracy drop, its
  psi, the overall drop, and the job's disparity measures (worst-group drop ``max_g drop_g``,
  ``psi = max_g psi_g``, ``drop_gap = max_g drop_g - min_g drop_g``). Each test item falls in one
  of five paired cells (both right; right->wrong; wrong->right; both wrong with the same
  prediction; both wrong with different predictions). Resampling the n_g items of a group with
  replacement is exactly a multinomial draw of the n_g cell counts with the observed cell shares,
  so the bootstrap draws the counts (``Generator.multinomial``) instead of indices: the same
  distribution, vectorised over resamples, O(groups x resamples) whatever the test-set size. Group
  sizes stay fixed (stratified); the reference and the variant stay paired. The generator is
  seeded with ``(seed, crc32(job))``, so a job's intervals do not depend on the other jobs.
* **Exact McNemar** per group on the discordant pairs b (wrong->right) and c (right->wrong),
  ``statsmodels.stats.contingency_tables.mcnemar(exact=True)`` (= ``scipy.stats.binomtest(min(b,
  c), b + c, 0.5)``), with **Holm** correction across the groups of one job
  (``statsmodels.stats.multitest.multipletests(method="holm")``); the overall row is not part of
  the family and carries its raw p-value as its adjusted one.
* **Warnings** (``warnings`` column, ``;``-separated): ``n<100`` when the group has fewer than
  MIN_GROUP_SIZE samples, ``b+c<6`` when it has fewer than MIN_DISCORDANT discordant pairs (no
  exact McNemar test can then reach p < 0.05, whatever the drop).

:func:`compute_stats` returns :class:`Stats` with two DataFrames of fixed columns.

Several group attributes (``harness.metrics.attributes``): each attribute's groups, and the
intersection's cells, are one family of their own: bootstrapped, Holm-corrected and summarised
(one disparity row) per attribute. The bootstrap generator of the one attribute "group" is seeded
as before, ``(seed, crc32(job))``; another attribute's with the attribute's name joined to the job.

``Stats.groups`` (:data:`GROUP_STATS_COLUMNS`), one row per job x (overall + each attribute's groups)::

    variant, target, delegate, scope, attribute, group   as in the run's metrics (the "overall"
                                 row has attribute and group "")
    n                            samples
    acc_ref, acc_ref_lo, acc_ref_hi   reference accuracy and its Wilson interval
    acc, acc_lo, acc_hi          variant accuracy and its Wilson interval
    acc_drop, acc_drop_lo, acc_drop_hi   acc_ref - acc and its paired bootstrap interval
    psi, psi_lo, psi_hi          group drop - overall drop and its interval (NaN on overall rows)
    b, c                         discordant pairs: wrong->right, right->wrong
    flips                        samples whose predicted class changed (b + c + wrong->other wrong)
    flip_rate                    flips / n
    mcnemar_p, mcnemar_p_holm    exact McNemar p-value; Holm-adjusted across the job's groups
    warnings                     "" or codes joined by ";" (see above)

``Stats.disparity`` (:data:`DISPARITY_STATS_COLUMNS`), one row per job x attribute::

    variant, target, delegate, attribute, n
    overall_drop, overall_drop_lo, overall_drop_hi
    worst_group, worst_group_drop, worst_group_drop_lo, worst_group_drop_hi
    psi_group, psi, psi_lo, psi_hi
    drop_gap, drop_gap_lo, drop_gap_hi
    n_resamples, seed, confidence   how the intervals were made

The bootstrap of a maximum over groups is biased upwards when groups are close; its interval is
reported as what a resampled test set would show, not as a bias-corrected estimate.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harness.metrics.attributes import Attributes, scope_of
from harness.metrics.cells import GroupCells, cells_of_frame
from harness.metrics.names import JOB_COLUMNS, MIN_GROUP_SIZE, OVERALL
from harness.records import DEFAULT_ATTRIBUTE

if TYPE_CHECKING:
    import pandas as pd

N_RESAMPLES = 2000   # percentile bounds of a 95 % interval settle to ~0.1 pp at this many resamples
SEED = 0             # default seed: the same run gives the same intervals on every machine
CONFIDENCE = 0.95    # two-sided level of every interval
Z_95 = 1.959963984540054  # scipy.stats.norm.isf((1 - 0.95) / 2) bit for bit: the 95 % intervals' critical value
MIN_DISCORDANT = 6   # below 6 discordant pairs the exact two-sided McNemar test cannot reach p < 0.05

GROUP_STATS_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "scope": "str", "attribute": "str", "group": "str",
    "n": "int64", "acc_ref": "float64", "acc_ref_lo": "float64", "acc_ref_hi": "float64",
    "acc": "float64", "acc_lo": "float64", "acc_hi": "float64",
    "acc_drop": "float64", "acc_drop_lo": "float64", "acc_drop_hi": "float64",
    "psi": "float64", "psi_lo": "float64", "psi_hi": "float64",
    "b": "int64", "c": "int64", "flips": "int64", "flip_rate": "float64",
    "mcnemar_p": "float64", "mcnemar_p_holm": "float64", "warnings": "str",
}

DISPARITY_STATS_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "attribute": "str", "n": "int64",
    "overall_drop": "float64", "overall_drop_lo": "float64", "overall_drop_hi": "float64",
    "worst_group": "str", "worst_group_drop": "float64",
    "worst_group_drop_lo": "float64", "worst_group_drop_hi": "float64",
    "psi_group": "str", "psi": "float64", "psi_lo": "float64", "psi_hi": "float64",
    "drop_gap": "float64", "drop_gap_lo": "float64", "drop_gap_hi": "float64",
    "n_resamples": "int64", "seed": "int64", "confidence": "float64",
}


@dataclass(frozen=True, eq=False)
class Stats:
    """Per-group statistics and per-job disparity intervals (see the module docstring)."""

    groups: "pd.DataFrame"
    disparity: "pd.DataFrame"

    def rows(self) -> "StatRows":
        """The tables as plain rows (what ``harness.signoff`` judges)."""
        return StatRows(tuple(self.groups.to_dict("records")), tuple(self.disparity.to_dict("records")))


# -- building blocks ---------------------------------------------------------------------------

def wilson_interval(count, nobs, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval(s) for ``count`` successes in ``nobs`` trials (arrays broadcast).

    The formula of ``statsmodels.stats.proportion.proportion_confint(method="wilson")``, operation
    for operation (so the bounds are bit-identical to it), without importing statsmodels (1.5 s).
    """
    q, n = np.asarray(count) / np.asarray(nobs), np.asarray(nobs)
    crit = _critical_value(confidence)
    crit2 = crit**2
    denom = 1 + crit2 / n
    center = (q + crit2 / (2 * n)) / denom
    dist = crit * np.sqrt(q * (1.0 - q) / n + crit2 / (4.0 * n**2))
    dist /= denom
    lo, hi = np.clip(center - dist, 0, 1), np.clip(center + dist, 0, 1)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def _critical_value(confidence: float) -> float:
    """``scipy.stats.norm.isf((1 - confidence) / 2)``, as statsmodels computes it; written out for 95 %
    so that scipy (0.8 s to import) is not needed for the default intervals."""
    if confidence == 0.95:
        return Z_95
    from scipy.stats import norm

    return float(norm.isf((1 - confidence) / 2))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b wrong->right and c right->wrong pairs (1.0 if none).

    ``statsmodels.stats.contingency_tables.mcnemar(exact=True)`` is ``min(1, 2 binom.cdf(min(b, c),
    b + c, 0.5))``; this calls the same scipy kernel, imported only when there are discordant pairs.
    """
    b, c = int(b), int(c)
    if b == c:
        return 1.0  # 2 * cdf(n/2) >= 1 for a symmetric binomial: statsmodels clips it to 1 as well
    from scipy.special._ufuncs import _binom_cdf

    return float(min(_binom_cdf(float(min(b, c)), b + c, 0.5) * 2, 1.0))


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in the input order; the
    arithmetic of ``statsmodels.stats.multitest.multipletests(method="holm")``."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1))
    adjusted[adjusted > 1] = 1
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def bootstrap_cells(counts: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled cell counts, shape (n_resamples, groups, cells), each group resampled on its own.

    ``counts`` is (groups, cells). Drawing n_g items with replacement from a group and counting
    their cells is a multinomial draw with the observed shares; that is what this does.
    """
    counts = np.asarray(counts, dtype=np.int64)
    out = np.empty((n_resamples,) + counts.shape, dtype=np.int64)
    for g, row in enumerate(counts):
        n = int(row.sum())
        out[:, g, :] = rng.multinomial(n, row / n, size=n_resamples) if n else 0
    return out


def stratified_bootstrap_means(values: np.ndarray, groups: np.ndarray, n_resamples: int,
                               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap means of the columns of ``values`` (n, m), resampling the rows within each group.

    Returns (sorted group names, group sizes, draws of shape (n_resamples, groups, m)). Rows are
    counted by their distinct values and each group's counts drawn from a multinomial, which is
    the same as resampling row indices and is fast when values take few distinct rows (paired
    0/1 outcomes and their differences).
    """
    values = np.asarray(values, dtype=np.float64)
    names, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    sizes = np.bincount(index, minlength=names.size)
    draws = np.empty((n_resamples, names.size, values.shape[1]))
    for g in range(names.size):
        distinct, inverse = np.unique(values[index == g], axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), minlength=distinct.shape[0])
        resampled = rng.multinomial(sizes[g], counts / sizes[g], size=n_resamples)
        draws[:, g, :] = resampled @ distinct / sizes[g]
    return names, sizes, draws


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval along axis 0 of bootstrap draws."""
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail], axis=0)
    return lo, hi


def job_rng(seed: int, job: tuple[str, ...]) -> np.random.Generator:
    """Generator for one job: seeded by ``seed`` and the job's name, independent of other jobs
    (and, given as a fourth part, of the attribute whose groups it resamples)."""
    return np.random.default_rng([int(seed), zlib.crc32("\x1f".join(job).encode())])


# -- the tables --------------------------------------------------------------------------------

def compute_stats(frame: "pd.DataFrame", n_resamples: int = N_RESAMPLES, seed: int = SEED,
                  confidence: float = CONFIDENCE, attrs: Attributes | None = None) -> Stats:
    """Per-group statistics and disparity intervals of every job in a per-sample frame.

    ``attrs`` splits the frame's cell labels into its attributes (``attributes.expand``); None
    takes the frame as it is (one attribute, "group", unless it has an ``attribute`` column).

    Example::

        stats = compute_stats(run.per_sample("int8", "local", "xnnpack"), n_resamples=2000, seed=0)
        stats.groups[["group", "acc_drop", "acc_drop_lo", "acc_drop_hi", "mcnemar_p_holm", "warnings"]]
    """
    return cell_stats(cells_of_frame(frame, attrs), n_resamples, seed, confidence).frames()


def cell_stats(cells: "list[GroupCells]", n_resamples: int = N_RESAMPLES, seed: int = SEED,
               confidence: float = CONFIDENCE, mcnemar: bool = True) -> "StatRows":
    """The statistics of :func:`compute_stats` from each job's and attribute's paired cell counts.

    The one function behind report, compare and signoff: given the same cells, the same numbers
    (the bootstrap draws cell counts either way). ``cells`` in table order: jobs sorted, each job's
    attributes in the run's order; a job's first attribute gives its overall row. No pandas.
    ``mcnemar=False`` leaves ``mcnemar_p`` and ``mcnemar_p_holm`` NaN (not computed) and so never
    imports scipy: sign-off judges no p-value (every other column is the same).

    Example::

        rows = cell_stats(cells_of_frame(frame), n_resamples=2000, seed=0)
        rows.disparity[0]["worst_group_drop_hi"]
    """
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    groups, disparity, first = [], [], set()
    for cell in cells:
        rows, disparity_row = _job_stats(cell, int(n_resamples), int(seed), confidence, mcnemar)
        groups.extend(rows if cell.job not in first else rows[1:])  # one overall row per job
        first.add(cell.job)
        disparity.append(disparity_row)
    return StatRows(groups=tuple(groups), disparity=tuple(disparity))


@dataclass(frozen=True, eq=False)
class StatRows:
    """:class:`Stats` as plain rows (dicts of Python values with the columns of
    :data:`GROUP_STATS_COLUMNS` and :data:`DISPARITY_STATS_COLUMNS`), for readers without pandas."""

    groups: tuple[dict, ...]
    disparity: tuple[dict, ...]

    def rows(self) -> "StatRows":
        return self

    def frames(self) -> Stats:
        """The same tables as DataFrames of fixed columns and dtypes."""
        import pandas as pd

        return Stats(groups=_typed(pd.DataFrame(list(self.groups)), GROUP_STATS_COLUMNS),
                     disparity=_typed(pd.DataFrame(list(self.disparity)), DISPARITY_STATS_COLUMNS))


class StoredRun(Protocol):
    """What :func:`run_stats` needs of a run read from disk (``harness.rundir.RunData`` has it);
    a protocol, so the metrics stage does not import the run directory above it."""

    @property
    def attributes(self) -> Attributes: ...

    def jobs(self, status: str = "ok") -> list[tuple[str, str, str]]: ...

    def per_sample(self, variant: str, target: str, delegate: str) -> "pd.DataFrame": ...


def run_stats(run: StoredRun, n_resamples: int = N_RESAMPLES, seed: int = SEED,
              confidence: float = CONFIDENCE) -> Stats:
    """:func:`compute_stats` over every finished job of a run directory (read with ``read_run``)."""
    import pandas as pd

    frames = [run.per_sample(*job) for job in run.jobs("ok")]
    if not frames:
        return compute_stats(pd.DataFrame(columns=list(JOB_COLUMNS)), n_resamples, seed, confidence)
    return compute_stats(pd.concat(frames, ignore_index=True), n_resamples, seed, confidence,
                         attrs=getattr(run, "attributes", None))


def _job_stats(cell: GroupCells, n_resamples: int, seed: int, confidence: float,
               mcnemar: bool = True) -> tuple[list[dict], dict]:
    """Group rows (overall first) and the disparity row of one job's groups of one attribute."""
    job, attribute, names, counts = cell.job, cell.attribute, list(cell.names), cell.counts
    key = job if attribute == DEFAULT_ATTRIBUTE else (*job, attribute)
    draws = bootstrap_cells(counts, n_resamples, job_rng(seed, key))
    n_g = counts.sum(axis=1)
    drop_draws = (draws[..., 1] - draws[..., 2]) / n_g                       # (B, G)
    overall_draws = (draws[..., 1].sum(axis=1) - draws[..., 2].sum(axis=1)) / n_g.sum()  # (B,)
    psi_draws = drop_draws - overall_draws[:, None]
    worst_draws, gap_draws = drop_draws.max(axis=1), drop_draws.max(axis=1) - drop_draws.min(axis=1)
    # every interval of the family in one quantile call: columns are taken one by one all the same
    lo, hi = percentile_interval(np.column_stack([overall_draws, drop_draws, psi_draws, worst_draws,
                                                  psi_draws.max(axis=1), gap_draws]), confidence)
    g = len(names)
    table = np.vstack([counts.sum(axis=0, keepdims=True), counts])           # overall row first
    rows = _count_columns(table, confidence, mcnemar) | {
        "scope": [OVERALL] + [scope_of(attribute)] * g, "group": [""] + names, "attribute": [""] + [attribute] * g,
        "acc_drop_lo": lo[:1 + g], "acc_drop_hi": hi[:1 + g],
        "psi_lo": np.r_[np.nan, lo[1 + g:1 + 2 * g]], "psi_hi": np.r_[np.nan, hi[1 + g:1 + 2 * g]],
    }
    rows["psi"] = np.r_[np.nan, rows["acc_drop"][1:] - rows["acc_drop"][0]]
    rows["mcnemar_p_holm"] = np.r_[rows["mcnemar_p"][0], holm(rows["mcnemar_p"][1:])]
    rows |= dict(zip(JOB_COLUMNS, ([part] * len(table) for part in job)))
    columns = {c: np.asarray(rows[c]).tolist() for c in GROUP_STATS_COLUMNS}   # Python values, in order
    records = [dict(zip(columns, values)) for values in zip(*columns.values())]
    at = [0, -3, -2, -1]   # the columns of the overall drop, the worst-group drop, max psi, the gap
    bounds = dict(zip(("overall_drop", "worst_group_drop", "psi", "drop_gap"), zip(lo[at], hi[at])))
    disparity_row = _disparity_row(job, names, rows, bounds, n_resamples, seed, confidence) | {"attribute": attribute}
    return records, {c: _native(disparity_row[c]) for c in DISPARITY_STATS_COLUMNS}


def _native(value):
    """A numpy scalar as the Python value a DataFrame's records would hold."""
    return value.item() if isinstance(value, np.generic) else value


def _count_columns(table: np.ndarray, confidence: float, mcnemar: bool = True) -> dict:
    """Columns that follow from cell counts alone: accuracies, Wilson bounds, b, c, McNemar (NaN
    without ``mcnemar``)."""
    n = table.sum(axis=1)
    right_ref = table[:, 0] + table[:, 1]
    right = table[:, 0] + table[:, 2]
    b, c = table[:, 2], table[:, 1]
    flips = table[:, 1] + table[:, 2] + table[:, 4]
    ref_lo, ref_hi = wilson_interval(right_ref, n, confidence)
    lo, hi = wilson_interval(right, n, confidence)
    return {
        "n": n, "acc_ref": right_ref / n, "acc_ref_lo": ref_lo, "acc_ref_hi": ref_hi,
        "acc": right / n, "acc_lo": lo, "acc_hi": hi, "acc_drop": (c - b) / n,
        "b": b, "c": c, "flips": flips, "flip_rate": flips / n,
        "mcnemar_p": np.array([mcnemar_exact(x, y) if mcnemar else np.nan for x, y in zip(b, c)], dtype=np.float64),
        "warnings": [_warnings(int(k), int(x + y)) for k, x, y in zip(n, b, c)],
    }


def _warnings(n: int, discordant: int) -> str:
    codes = []
    if n < MIN_GROUP_SIZE:
        codes.append(f"n<{MIN_GROUP_SIZE}")
    if discordant < MIN_DISCORDANT:
        codes.append(f"b+c<{MIN_DISCORDANT}")
    return ";".join(codes)


def _disparity_row(job, names, rows, bounds, n_resamples, seed, confidence) -> dict:
    """One job's disparity row; ``bounds``: measure -> its interval (lo, hi)."""
    drop = np.asarray(rows["acc_drop"][1:], dtype=np.float64)
    psi = drop - rows["acc_drop"][0]
    worst, most = int(np.argmax(drop)), int(np.argmax(psi))
    row = dict(zip(JOB_COLUMNS, job)) | {
        "n": int(rows["n"][0]), "overall_drop": rows["acc_drop"][0],
        "worst_group": names[worst], "worst_group_drop": drop[worst],
        "psi_group": names[most], "psi": psi[most], "drop_gap": drop.max() - drop.min(),
        "n_resamples": n_resamples, "seed": seed, "confidence": confidence,
    }
    return row | {f"{name}_{side}": v for name, pair in bounds.items() for side, v in zip(("lo", "hi"), pair)}


def _typed(table: "pd.DataFrame", schema: dict[str, str]) -> "pd.DataFrame":
    """``table`` restricted to ``schema``'s columns, in order, with its dtypes (also when empty)."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.items()})
    return table[list(schema)].astype(schema).reset_index(drop=True)
