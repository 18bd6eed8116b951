"""The text tables the CLI prints from a run: the per-group table and the one-line-per-job summary.

Both fit 100 columns: job names are cut to their column (``harness.text.fit_cell``), failed jobs
show their stage and the start of their error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from harness.text import fit_cell, num_cell, pct_cell, pp_cell, ratio_cell

if TYPE_CHECKING:
    import pandas as pd

TABLE_WIDTHS = {"variant": 9, "target": 8, "delegate": 9, "group": 12}  # keeps a row under 100 columns
MAX_NAME_WIDTHS = {"variant": 20, "target": 16}  # longer names ("int8-balanced-calib") widen up to this


def _job_widths(variants, targets) -> tuple[int, int]:
    """Column widths for variant and target: the defaults, widened to fit the longest names."""
    def width(key, names):
        longest = max((len(str(n)) for n in names), default=0)
        return min(MAX_NAME_WIDTHS[key], max(TABLE_WIDTHS[key], longest))
    return width("variant", variants), width("target", targets)


def format_table(metrics: "pd.DataFrame") -> str:
    """The per-group table the CLI prints: per job its overall row, then its groups.

    drop_pp is acc_ref - acc in percentage points (positive = variant worse); var_x is
    logit_var / logit_var_ref; n marked * is below the small-group threshold.
    """
    from harness.metrics.attributes import CELL_SCOPE
    from harness.metrics.groups import MIN_GROUP_SIZE, OVERALL, sort_metrics
    from harness.records import DEFAULT_ATTRIBUTE

    if metrics.empty:
        return "(no metrics: no job finished)"
    wv, wt = _job_widths(metrics.variant, metrics.target)
    widths = {**TABLE_WIDTHS, "variant": wv, "target": wt}
    header = (f"{'variant':{wv}} {'target':{wt}} {'delegate':9} {'group':12} {'n':>7} {'acc_ref%':>8} "
              f"{'acc%':>6} {'drop_pp':>8} {'flip%':>6} {'xloss':>8} {'var_x':>6}")
    lines = [header, "-" * len(header)]
    label_width = wv + wt + 9 + 12 + 3  # a named attribute's row spans the job and group columns
    cells = False
    for row in sort_metrics(metrics).itertuples(index=False):
        overall = row.scope == OVERALL
        if overall or row.attribute == DEFAULT_ATTRIBUTE:
            job = [fit_cell(v, widths[k]) if overall else "" for k, v in
                   (("variant", row.variant), ("target", row.target), ("delegate", row.delegate))]
            label = f"{job[0]:{wv}} {job[1]:{wt}} {job[2]:9} {fit_cell('(all)' if overall else row.group, 12):12}"
        else:
            label = f"{fit_cell(f'  {row.attribute}: {row.group}', label_width):{label_width}}"
        cells = cells or row.scope == CELL_SCOPE
        n = f"{row.n}{'*' if row.small_group else ' '}"
        lines.append(
            f"{label} {n:>7} "
            f"{100 * row.acc_ref:8.1f} {100 * row.acc:6.1f} {100 * row.acc_drop:+8.2f} "
            f"{100 * row.flip_rate:6.1f} {row.excess_loss:+8.4f} {ratio_cell(row.logit_var, row.logit_var_ref):>6}")
    lines.append("drop_pp = acc_ref - acc in percentage points (positive: variant worse)")
    lines.append(f"xloss = excess loss (nats); var_x = logit variance ratio; * n < {MIN_GROUP_SIZE}: too noisy alone")
    if cells:
        lines.append("a\u00d7b rows are intersectional cells: read them with their intervals (qskew report); "
                     "sign-off lets them WARN, never FAIL")
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line per job: overall drop, worst group and its drop, psi, the accuracy gap before/after."""
    runs = summary.get("runs", [])
    if not runs:
        return "(no jobs)"
    wv, wt = _job_widths([r["variant"] for r in runs], [r["target"] for r in runs])
    header = (f"{'variant':{wv}} {'target':{wt}} {'delegate':9} {'drop_pp':>8} {'worst':12} {'worst_pp':>8} "
              f"{'psi_pp':>7} {'gap_ref':>7} {'gap':>6} {'ms/smp':>7}")
    lines = [header, "-" * len(header)]
    for r in runs:
        job = f"{fit_cell(r['variant'], wv):{wv}} {fit_cell(r['target'], wt):{wt}} {fit_cell(r['delegate'], 9):9}"
        if r["status"] != "ok":
            lines.append(f"{job} {fit_cell('FAILED (' + str(r['stage']) + '): ' + str(r['error']), 70)}")
            continue
        lines.append(
            f"{job} {pp_cell(r['overall_drop']):>8} {fit_cell(r['worst_group'] or '-', 12):12} "
            f"{pp_cell(r['worst_group_drop']):>8} {pp_cell(r['psi']):>7} {pct_cell(r['acc_gap_ref']):>7} "
            f"{pct_cell(r['acc_gap']):>6} {num_cell(r['latency_ms_per_sample'], '7.3f'):>7}")
    lines.append("drop, worst, psi: percentage points (positive: worse than FP32)")
    lines.append("gap_ref, gap: max - min group accuracy (%) of FP32 / the variant")
    return "\n".join(lines)
