"""The before/after table of ``qskew mitigate``: per variant and group, the accuracy drop vs FP32.

Read from the run directory through ``harness.rundir`` and ``harness.metrics.stats`` (the same
paired, group-stratified bootstrap intervals ``qskew report`` and ``signoff`` use), so the table
can be rebuilt from any run directory ``qskew mitigate`` wrote.

    >>> table = before_after(Path("runs/mitigate-small_cnn"))  # doctest: +SKIP
    >>> print(format_before_after(table))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.metrics.attributes import attribute_order
from harness.metrics.mitigation import ROLES

if TYPE_CHECKING:
    import pandas as pd

GROUP_COLUMNS = ("variant", "target", "delegate", "role", "scope", "attribute", "group", "n", "acc_ref", "acc",
                 "acc_drop", "acc_drop_lo", "acc_drop_hi")
WORST_COLUMNS = ("variant", "target", "delegate", "role", "attribute", "worst_group", "worst_group_drop",
                 "worst_group_drop_lo", "worst_group_drop_hi", "drop_gap", "drop_gap_lo", "drop_gap_hi")


@dataclass(frozen=True, eq=False)
class BeforeAfter:
    """``groups``: one row per job x (overall + each attribute's groups, then the cells);
    ``worst``: one row per job and attribute (one per job for a dataset with one attribute)."""

    groups: "pd.DataFrame"
    worst: "pd.DataFrame"
    n_resamples: int
    seed: int


def before_after(run_dir: Path, n_resamples: int | None = None, seed: int | None = None) -> BeforeAfter:
    """The table of a run directory (intervals: ``harness.metrics.stats`` defaults unless given)."""
    from harness import rundir
    from harness.metrics.stats import N_RESAMPLES, SEED, run_stats

    n_resamples = N_RESAMPLES if n_resamples is None else n_resamples
    seed = SEED if seed is None else seed
    stats = run_stats(rundir.read_run(Path(run_dir)), n_resamples=n_resamples, seed=seed)
    groups = _ordered(stats.groups.assign(role=stats.groups["variant"].map(ROLES).fillna("")))
    worst = _ordered(stats.disparity.assign(role=stats.disparity["variant"].map(ROLES).fillna("")))
    return BeforeAfter(groups[list(GROUP_COLUMNS)].reset_index(drop=True),
                       worst[list(WORST_COLUMNS)].reset_index(drop=True), n_resamples, seed)


def format_before_after(table: BeforeAfter) -> str:
    """Text table: per job its overall row then its groups; then the worst group per job (and
    attribute: groups are then named "sex=Female", cells "sex\u00d7race=Female\u00d7Black")."""
    from harness.metrics.attributes import qualified

    names = ["(all)" if r.scope == "overall" else qualified(r.attribute, r.group) for r in table.groups.itertuples()]
    width = max([12] + [len(n) for n, a in zip(names, table.groups["attribute"]) if a not in ("", "group")])
    header = f"{'variant':20} {'role':28} {'group':{width}} {'n':>6} {'acc%':>6} {'drop_pp':>8}  95% interval"
    lines = ["accuracy drop vs the original FP32 model, before and after mitigation", header,
             "-" * len(header)]
    several = table.groups[["target", "delegate"]].drop_duplicates().shape[0] > 1
    last = None
    for row, group in zip(table.groups.itertuples(index=False), names):
        job = (row.variant, row.target, row.delegate)
        name = f"{row.variant}@{row.target}/{row.delegate}" if several else row.variant
        first = job != last
        last = job
        lines.append(f"{name if first else '':20} {row.role if first else '':28} {group:{width}} {row.n:>6} "
                     f"{100 * row.acc:6.1f} {_pp(row.acc_drop):>8}  {_interval(row.acc_drop_lo, row.acc_drop_hi)}")
    lines += ["", "worst group per variant (largest drop) and the gap between groups:"]
    for row in table.worst.itertuples(index=False):
        name = f"{row.variant}@{row.target}/{row.delegate}" if several else row.variant
        lines.append(f"  {name:20} worst {qualified(row.attribute, row.worst_group):{width}} "
                     f"{_pp(row.worst_group_drop):>8} "
                     f"{_interval(row.worst_group_drop_lo, row.worst_group_drop_hi)}   gap "
                     f"{_pp(row.drop_gap)} {_interval(row.drop_gap_lo, row.drop_gap_hi)}")
    lines.append(f"drop_pp = FP32 acc - variant acc, percentage points (positive: worse than FP32); "
                 f"intervals: paired bootstrap, {table.n_resamples} resamples, seed {table.seed}")
    return "\n".join(lines)


def to_json(table: BeforeAfter) -> dict:
    """JSON-ready rows (NaN as null)."""
    def records(frame):
        return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")

    return {"groups": records(table.groups), "worst": records(table.worst),
            "n_resamples": table.n_resamples, "seed": table.seed}


def _ordered(frame: "pd.DataFrame") -> "pd.DataFrame":
    rank = {name: i for i, name in enumerate(ROLES)}
    keys = frame.assign(_rank=frame["variant"].map(lambda v: rank.get(v, len(rank))))
    sort_by = ["_rank", "variant", "target", "delegate"]
    order = {a: i for i, a in enumerate(attribute_order(a for a in frame["attribute"] if a))}
    keys = keys.assign(_attribute=frame["attribute"].map(lambda a: order.get(a, -1)))
    sort_by += ["_attribute"]
    if "scope" in frame.columns:
        keys = keys.assign(_group_row=(keys["scope"] != "overall"))
        sort_by = sort_by[:-1] + ["_group_row", "_attribute", "group"]
    return keys.sort_values(sort_by, kind="mergesort").drop(columns=[c for c in ("_rank", "_group_row", "_attribute")
                                                                      if c in keys.columns])


def _pp(x: float) -> str:
    return "-" if x != x else f"{100 * x:+.2f}"


def _interval(lo: float, hi: float) -> str:
    return "-" if lo != lo or hi != hi else f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
