"""What changed between two run directories, per variant x target x delegate x group.

For every job and group the accuracy, the accuracy drop vs each run's own FP32 reference and the
flip rate are set side by side, with the difference B - A. When both runs hold the same test set
(the same sample ids, each with the same label and group, and the same group attributes) the
comparison is **paired**: each difference gets a 95 % percentile interval from a bootstrap that
resamples the samples within each group, the same samples for A and B
(``stats.stratified_bootstrap_means``), seeded per job. With several group attributes
(``harness.metrics.attributes``) every attribute's groups, and the intersection's cells, get their
intervals from a bootstrap stratified by that attribute (seeded per job and attribute); the
overall row's from the first attribute's.
Otherwise the differences are reported without an interval, and the comparison says why (ids or
labels differ); there is no honest paired interval across different samples.

Columns of ``Comparison.table`` (:data:`COMPARE_COLUMNS`), one row per job x (overall + groups)::

    variant, target, delegate, scope, attribute, group   as in the run's metrics ("overall" row: "")
    status            "both", "only_a" or "only_b": where the job (and group) finished
    n_a, n_b          samples in run A / run B (0 where absent)
    acc_a, acc_b, acc_diff, acc_diff_lo, acc_diff_hi                 variant accuracy, B - A
    acc_drop_a, acc_drop_b, drop_diff, drop_diff_lo, drop_diff_hi    acc_ref - acc, B - A
    flip_rate_a, flip_rate_b, flip_rate_diff, flip_rate_diff_lo, flip_rate_diff_hi
    paired            True when the interval columns are filled

A positive ``drop_diff`` means run B's variant lost more accuracy against its reference than A's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.metrics.stats import CONFIDENCE, N_RESAMPLES, SEED
from harness.text import name_width

if TYPE_CHECKING:
    import pandas as pd

    from harness.rundir import RunData

JOB = ["variant", "target", "delegate"]
KEYS = JOB + ["scope", "attribute", "group"]
MEASURES = (("acc", "acc"), ("acc_drop", "drop"), ("flip_rate", "flip_rate"))  # metrics column, diff prefix

COMPARE_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "scope": "str", "attribute": "str", "group": "str",
    "status": "str",
    "n_a": "int64", "n_b": "int64",
    "acc_a": "float64", "acc_b": "float64", "acc_diff": "float64", "acc_diff_lo": "float64", "acc_diff_hi": "float64",
    "acc_drop_a": "float64", "acc_drop_b": "float64",
    "drop_diff": "float64", "drop_diff_lo": "float64", "drop_diff_hi": "float64",
    "flip_rate_a": "float64", "flip_rate_b": "float64",
    "flip_rate_diff": "float64", "flip_rate_diff_lo": "float64", "flip_rate_diff_hi": "float64",
    "paired": "bool",
}


@dataclass(frozen=True, eq=False)
class Comparison:
    """The table of changes, whether it is paired, and why (one sentence)."""

    table: "pd.DataFrame"
    paired: bool
    reason: str
    run_a: str
    run_b: str


def compare_runs(run_a: Path, run_b: Path, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE) -> Comparison:
    """Compare two run directories (see the module docstring).

    Example::

        comparison = compare_runs(Path("runs/monday"), Path("runs/tuesday"))
        print(format_comparison(comparison))
    """
    from harness.rundir import read_run

    a, b = read_run(Path(run_a)), read_run(Path(run_b))
    paired, reason = same_test_set(a, b)
    table = _point_table(a.metrics, b.metrics)
    if paired:
        table = _add_intervals(table, a, b, int(n_resamples), int(seed), confidence)
    return Comparison(table=_typed(table), paired=paired, reason=reason, run_a=str(a.path), run_b=str(b.path))


def same_test_set(a: "RunData", b: "RunData") -> tuple[bool, str]:
    """Whether two runs hold the same samples (ids, labels and groups), and a sentence saying so."""
    ta = a.test_set().set_index("id").sort_index()
    tb = b.test_set().set_index("id").sort_index()
    only_a, only_b = ta.index.difference(tb.index), tb.index.difference(ta.index)
    if len(only_a) or len(only_b):
        return False, (f"not paired: the test sets differ ({len(only_a)} ids only in A, {len(only_b)} only in B, "
                       f"e.g. {list(only_a[:2]) + list(only_b[:2])}); differences have no interval")
    if a.attributes != b.attributes:
        return False, (f"not paired: the runs split their groups differently (A: {a.attributes.reported}, "
                       f"B: {b.attributes.reported}); differences have no interval")
    for column in ("label", "group"):
        differ = ta.index[ta[column].to_numpy() != tb.loc[ta.index, column].to_numpy()]
        if len(differ):
            return False, (f"not paired: {len(differ)} samples have another {column} in B (e.g. "
                           f"{list(differ[:3])}); differences have no interval")
    return True, (f"paired: the same {len(ta)} test samples (ids, labels, groups); intervals from a "
                  f"group-stratified paired bootstrap")


def _point_table(ma: "pd.DataFrame", mb: "pd.DataFrame") -> "pd.DataFrame":
    from harness.metrics.groups import sort_metrics

    cols = KEYS + ["n"] + [m for m, _ in MEASURES]
    table = ma[cols].merge(mb[cols], on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    table["status"] = table.pop("_merge").map({"both": "both", "left_only": "only_a", "right_only": "only_b"})
    for side in ("a", "b"):
        table[f"n_{side}"] = table[f"n_{side}"].fillna(0)
    for metric, prefix in MEASURES:
        table[f"{prefix}_diff"] = table[f"{metric}_b"] - table[f"{metric}_a"]
        table[f"{prefix}_diff_lo"] = np.nan
        table[f"{prefix}_diff_hi"] = np.nan
    table["paired"] = False
    return sort_metrics(table)


def _add_intervals(table: "pd.DataFrame", a: "RunData", b: "RunData", n_resamples: int, seed: int,
                   confidence: float) -> "pd.DataFrame":
    """Fill the interval columns of the jobs both runs finished: the overall row, and every
    attribute's groups (and the intersection's cells), each attribute stratified by its own groups."""
    from harness.metrics.stats import percentile_interval

    table = table.copy()
    both = sorted(set(a.jobs("ok")) & set(b.jobs("ok")))
    for job in both:
        values, cells = _paired_differences(a.per_sample(*job), b.per_sample(*job))
        in_job = ((table["variant"] == job[0]) & (table["target"] == job[1]) & (table["delegate"] == job[2])).to_numpy()
        for i, (attribute, groups) in enumerate(_attribute_groups(cells, a.attributes)):
            names, sizes, draws = _draws(values, groups, job, attribute, n_resamples, seed)
            lo_g, hi_g = percentile_interval(draws, confidence)                       # (G, m)
            if i == 0:  # the overall row: from the first attribute's strata (the one "group" for one)
                overall = (draws * sizes[None, :, None]).sum(axis=1) / sizes.sum()   # (B, m)
                lo_all, hi_all = percentile_interval(overall, confidence)
                rows = in_job & (table["scope"] == "overall").to_numpy()
                for k, (_, prefix) in enumerate(MEASURES):
                    table.loc[rows, [f"{prefix}_diff_lo", f"{prefix}_diff_hi"]] = [lo_all[k], hi_all[k]]
            of_attribute = in_job & (table["attribute"] == attribute).to_numpy()
            for g, name in enumerate(names):
                rows = of_attribute & (table["group"] == name).to_numpy()
                for k, (_, prefix) in enumerate(MEASURES):
                    table.loc[rows, [f"{prefix}_diff_lo", f"{prefix}_diff_hi"]] = [lo_g[g, k], hi_g[g, k]]
        table.loc[in_job, "paired"] = True
    return table


def _attribute_groups(cells: np.ndarray, attrs) -> list[tuple[str, np.ndarray]]:
    """(attribute, each sample's group of it) for every reported attribute, samples in ``cells`` order."""
    import pandas as pd

    from harness.metrics.attributes import expand

    frame = expand(pd.DataFrame({"group": cells}), attrs)
    return [(str(name), part["group"].to_numpy().astype(str))
            for name, part in frame.groupby("attribute", sort=False)]


def _draws(values: np.ndarray, groups: np.ndarray, job, attribute: str, n_resamples: int, seed: int):
    """Group-stratified bootstrap means of ``values``; seeded as ``harness.metrics.stats`` seeds a job's
    attribute (the one "group" attribute: by the job alone, as before attributes existed)."""
    from harness.metrics.stats import job_rng, stratified_bootstrap_means
    from harness.records import DEFAULT_ATTRIBUTE

    key = tuple(job) if attribute == DEFAULT_ATTRIBUTE else (*job, attribute)
    return stratified_bootstrap_means(values, groups, n_resamples, job_rng(seed, key))


def _paired_differences(fa: "pd.DataFrame", fb: "pd.DataFrame") -> tuple[np.ndarray, np.ndarray]:
    """Per sample (B - A) of correct, drop (correct_ref - correct) and flip, rows joined on id."""
    fb = fb.set_index("id").loc[fa["id"]]
    per_sample = []
    for f in (fa, fb):
        right, right_ref = f["correct"].to_numpy(float), f["correct_ref"].to_numpy(float)
        per_sample.append(np.column_stack([right, right_ref - right, f["flip"].to_numpy(float)]))
    return per_sample[1] - per_sample[0], fa["group"].to_numpy().astype(str)


def _typed(table: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COMPARE_COLUMNS.items()})
    return table[list(COMPARE_COLUMNS)].astype(COMPARE_COLUMNS)


def format_comparison(comparison: Comparison) -> str:
    """A table a person reads: per job and group, A -> B of accuracy, drop and flip rate (pp);
    a job finished in one run only gets one line saying so. With several group attributes a
    group is named with its attribute ("sex=Female", "sex\u00d7race=Female\u00d7Black")."""
    from harness.metrics.attributes import qualified

    table = comparison.table
    names = ["(all)" if r.scope == "overall" else qualified(r.attribute, r.group) for r in table.itertuples()]
    lines = [f"A: {comparison.run_a}", f"B: {comparison.run_b}", comparison.reason, ""]
    jobs = [f"{r.variant}/{r.target}/{r.delegate}" for r in table.itertuples(index=False)]
    wj = name_width(jobs, 28)  # job and group names are never cut: two could look alike
    wg = name_width(names, 12)
    header = (f"{'job':{wj}} {'group':{wg}} {'n':>6} {'acc A->B %':>13} {'d acc pp':>22} "
              f"{'drop A->B pp':>14} {'d drop pp':>22} {'d flip pp':>22}")
    lines += [header, "-" * len(header)]
    for r, name in zip(table.itertuples(index=False), names):
        job = f"{r.variant}/{r.target}/{r.delegate}"
        if r.status != "both" and r.scope == "overall":
            lines.append(f"{job:{wj}} {name:{wg}} {'':>6} only in run {r.status[-1].upper()}")
            continue
        if r.status != "both":
            continue
        lines.append(
            f"{job:{wj}} {name:{wg}} {r.n_a:>6} {100 * r.acc_a:5.1f}->{100 * r.acc_b:5.1f} "
            f"{_diff(r.acc_diff, r.acc_diff_lo, r.acc_diff_hi):>22} "
            f"{100 * r.acc_drop_a:+5.1f}->{100 * r.acc_drop_b:+5.1f} "
            f"{_diff(r.drop_diff, r.drop_diff_lo, r.drop_diff_hi):>22} "
            f"{_diff(r.flip_rate_diff, r.flip_rate_diff_lo, r.flip_rate_diff_hi):>22}")
    lines.append("d = B - A in percentage points [95 % interval]; drop = FP32 acc - variant acc (each run's own)")
    return "\n".join(lines)


def _diff(point: float, lo: float, hi: float) -> str:
    if not np.isfinite(point):
        return "-"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{100 * point:+.2f}"
    return f"{100 * point:+.2f} [{100 * lo:+.2f},{100 * hi:+.2f}]"
