"""The text tables the CLI prints from a run: the per-group table and the one-line-per-job summary.

Both fit 100 columns for names of usual length; a longer variant, device, delegate or group name
widens its column instead of being cut (two cut names could look alike). Failed jobs show their
stage and the start of their error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from harness.text import fit_cell, name_width, num_cell, pct_cell, pp_cell, ratio_cell

if TYPE_CHECKING:
    import pandas as pd

TABLE_WIDTHS = {"variant": 9, "target": 8, "delegate": 9, "group": 12}  # narrowest; widened to the longest name


def _widths(**names) -> dict[str, int]:
    """Column widths: the defaults, widened to the longest name (names are never cut, so two
    never look alike)."""
    return {key: name_width(values, TABLE_WIDTHS[key]) for key, values in names.items()}


def format_table(metrics: "pd.DataFrame") -> str:
    """The per-group table the CLI prints: per job its overall row, then its groups.

    drop_pp is acc_ref - acc in percentage points (positive = variant worse); var_x is
    logit_var / logit_var_ref; n marked * is below the small-group threshold.
    """
    from harness.metrics.groups import MIN_GROUP_SIZE, OVERALL, sort_metrics

    if metrics.empty:
        return "(no metrics: no job finished)"
    w = _widths(variant=metrics.variant, target=metrics.target, delegate=metrics.delegate,
                group=list(metrics.group) + ["(all)"])
    header = (f"{'variant':{w['variant']}} {'target':{w['target']}} {'delegate':{w['delegate']}} "
              f"{'group':{w['group']}} {'n':>7} {'acc_ref%':>8} "
              f"{'acc%':>6} {'drop_pp':>8} {'flip%':>6} {'xloss':>8} {'var_x':>6}")
    lines = [header, "-" * len(header)]
    for row in sort_metrics(metrics).itertuples(index=False):
        overall = row.scope == OVERALL
        job = " ".join(f"{fit_cell(v, w[k]) if overall else '':{w[k]}}" for k, v in
                       (("variant", row.variant), ("target", row.target), ("delegate", row.delegate)))
        n = f"{row.n}{'*' if row.small_group else ' '}"
        lines.append(
            f"{job} {fit_cell('(all)' if overall else row.group, w['group']):{w['group']}} {n:>7} "
            f"{100 * row.acc_ref:8.1f} {100 * row.acc:6.1f} {100 * row.acc_drop:+8.2f} "
            f"{100 * row.flip_rate:6.1f} {row.excess_loss:+8.4f} {ratio_cell(row.logit_var, row.logit_var_ref):>6}")
    lines.append("drop_pp = acc_ref - acc in percentage points (positive: variant worse)")
    lines.append(f"xloss = excess loss (nats); var_x = logit variance ratio; * n < {MIN_GROUP_SIZE}: too noisy alone")
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line per job: overall drop, worst group and its drop, psi, the accuracy gap before/after."""
    runs = summary.get("runs", [])
    if not runs:
        return "(no jobs)"
    w = _widths(variant=[r["variant"] for r in runs], target=[r["target"] for r in runs],
                delegate=[r["delegate"] for r in runs], group=[r["worst_group"] or "-" for r in runs])
    header = (f"{'variant':{w['variant']}} {'target':{w['target']}} {'delegate':{w['delegate']}} {'drop_pp':>8} "
              f"{'worst':{w['group']}} {'worst_pp':>8} {'psi_pp':>7} {'gap_ref':>7} {'gap':>6} {'ms/smp':>7}")
    lines = [header, "-" * len(header)]
    for r in runs:
        job = " ".join(f"{fit_cell(r[k], w[k]):{w[k]}}" for k in ("variant", "target", "delegate"))
        if r["status"] != "ok":
            lines.append(f"{job} {fit_cell('FAILED (' + str(r['stage']) + '): ' + str(r['error']), 70)}")
            continue
        lines.append(
            f"{job} {pp_cell(r['overall_drop']):>8} {fit_cell(r['worst_group'] or '-', w['group']):{w['group']}} "
            f"{pp_cell(r['worst_group_drop']):>8} {pp_cell(r['psi']):>7} {pct_cell(r['acc_gap_ref']):>7} "
            f"{pct_cell(r['acc_gap']):>6} {num_cell(r['latency_ms_per_sample'], '7.3f'):>7}")
    lines.append("drop, worst, psi: percentage points (positive: worse than FP32)")
    lines.append("gap_ref, gap: max - min group accuracy (%) of FP32 / the variant")
    return "\n".join(lines)
