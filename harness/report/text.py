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
    logit_var / logit_var_ref; n marked * is below the small-group threshold. With several group
    attributes a row reads "  sex: Female", and an intersectional cell "  sex×race: Female×Other".
    """
    from harness.metrics.attributes import CELL_SCOPE
    from harness.metrics.groups import MIN_GROUP_SIZE, OVERALL, sort_metrics
    from harness.records import DEFAULT_ATTRIBUTE

    if metrics.empty:
        return "(no metrics: no job finished)"
    rows = sort_metrics(metrics)
    named = rows[(rows.scope != OVERALL) & (rows.attribute != DEFAULT_ATTRIBUTE)]
    labels = [f"  {a}: {g}" for a, g in zip(named.attribute, named.group)]
    w = _widths(variant=rows.variant, target=rows.target, delegate=rows.delegate,
                group=list(rows.group[rows.attribute == DEFAULT_ATTRIBUTE]) + ["(all)"])
    span = w["variant"] + w["target"] + w["delegate"] + 3  # a named attribute's label spans job and group
    w["group"] = max(w["group"], max((len(label) for label in labels), default=0) - span)
    header = (f"{'variant':{w['variant']}} {'target':{w['target']}} {'delegate':{w['delegate']}} "
              f"{'group':{w['group']}} {'n':>7} {'acc_ref%':>8} "
              f"{'acc%':>6} {'drop_pp':>8} {'flip%':>6} {'xloss':>8} {'var_x':>6}")
    lines = [header, "-" * len(header)]
    for row in rows.itertuples(index=False):
        overall = row.scope == OVERALL
        if overall or row.attribute == DEFAULT_ATTRIBUTE:
            job = " ".join(f"{fit_cell(v, w[k]) if overall else '':{w[k]}}" for k, v in
                           (("variant", row.variant), ("target", row.target), ("delegate", row.delegate)))
            label = f"{job} {fit_cell('(all)' if overall else row.group, w['group']):{w['group']}}"
        else:
            label = f"{f'  {row.attribute}: {row.group}':{span + w['group']}}"
        n = f"{row.n}{'*' if row.small_group else ' '}"
        lines.append(
            f"{label} {n:>7} "
            f"{100 * row.acc_ref:8.1f} {100 * row.acc:6.1f} {100 * row.acc_drop:+8.2f} "
            f"{100 * row.flip_rate:6.1f} {row.excess_loss:+8.4f} {ratio_cell(row.logit_var, row.logit_var_ref):>6}")
    lines.append("drop_pp = acc_ref - acc in percentage points (positive: variant worse)")
    lines.append(f"xloss = excess loss (nats); var_x = logit variance ratio; * n < {MIN_GROUP_SIZE}: too noisy alone")
    if (rows.scope == CELL_SCOPE).any():
        lines.append("a\u00d7b rows are intersectional cells: read them with their intervals (qskew report); "
                     "sign-off lets them WARN, never FAIL")
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
