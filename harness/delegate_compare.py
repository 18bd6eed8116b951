"""What each delegate does to one variant's results, per group: the table of ``qskew compare-delegates``.

For one variant, every job (device x delegate) of a run directory is set against two references:

- the FP32 Keras model on the host: accuracy drop, split into its two sources (the run's metrics
  ``drop_quantization`` -- FP32 to the variant on the CPU reference kernels -- and
  ``drop_delegate`` -- reference kernels to this delegate; they add up to the drop);
- the same variant on the CPU reference kernels (the baseline job of
  :func:`harness.metrics.groups.baseline_target`: the same device's, else another device's):
  the share of samples whose predicted class differs, the share of logits that differ and the largest
  difference, in output steps for integer-output variants (:mod:`harness.metrics.steps`) and in logits.

A job that failed (a delegate that would not load, a profile that refused the variant) is one
row with status "failed" and its error, so the table shows every delegate asked for.

Columns of :func:`delegate_table` (:data:`TABLE_COLUMNS`), one row per job x (overall, groups)::

    target, delegate, delegate_applied, status, error
    precision                  asked/reported by the runtime ("fp16/unknown": LiteRT's GPU was
                               allowed fp16 and said nothing more; "model": the model's own types)
    group                      "" on a job's overall row; "sex=Female" (and cells) with several attributes
    n, acc, acc_drop           accuracy and its drop vs FP32 (fractions)
    drop_quantization, drop_delegate   the drop's two parts (the run's metrics)
    baseline_target            whose reference-kernel job the next two columns compare with
    flip_vs_ref                share of samples whose predicted class differs from the baseline's
    max_abs_dlogit_vs_ref      max over samples and classes of |z - z_baseline|
    max_step_diff              the same in quantization steps of the variant's output tensor (its
                               scale from the manifest's variants); NaN for float outputs
    frac_logits_diff           share of logits that differ from the baseline's (by >= 1 step for
                               integer outputs, at all for float ones)
    latency_ms_per_sample      the job's latency (median of its runs when repeated)
    noise_max_abs_dlogit       max |Δlogit| between repeated runs of this job (NaN: ran once)
    noise_latency_spread       (max - min) / median latency over the repeats (NaN: ran once)
"""

from __future__ import annotations

import math
import textwrap
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.metrics.attributes import expand, qualified
from harness.metrics.groups import BASELINE_DELEGATE, OVERALL, baseline_target
from harness.metrics.steps import manifest_output_scales, pair_diff
from harness.rundir import RunData
from harness.text import fit_cell, name_width, nan_cell

ERROR_LINES = 3  # a failed job's error in the printed table (the whole error is in delegates.csv)

TABLE_COLUMNS: dict[str, str] = {
    "target": "str", "delegate": "str", "delegate_applied": "str", "status": "str", "error": "str",
    "precision": "str",
    "group": "str", "n": "int64", "acc": "float64", "acc_drop": "float64",
    "drop_quantization": "float64", "drop_delegate": "float64", "baseline_target": "str",
    "flip_vs_ref": "float64", "max_abs_dlogit_vs_ref": "float64",
    "max_step_diff": "float64", "frac_logits_diff": "float64", "latency_ms_per_sample": "float64",
    "noise_max_abs_dlogit": "float64", "noise_latency_spread": "float64",
}


def delegate_table(run: RunData, variant: str, delegates: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of TABLE_COLUMNS for every job of ``variant`` in ``run``: devices in name order, and
    on each device the delegates in the order of ``delegates`` (others after them, by name)."""
    rank = {d: i for i, d in enumerate(delegates)}
    entries = sorted((r for r in run.summary.get("runs", []) if r["variant"] == variant),
                     key=lambda r: (r["target"], rank.get(r["delegate"], len(rank)), r["delegate"]))
    with_ref = {r["target"] for r in entries if r["delegate"] == BASELINE_DELEGATE and r["status"] == "ok"}
    rows: list[dict] = []
    for entry in entries:
        rows.extend(_job_rows(run, variant, entry, baseline_target(with_ref, entry["target"])))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype(TABLE_COLUMNS) if len(table) else table


def _job_rows(run: RunData, variant: str, entry: dict, base: str | None) -> list[dict]:
    job = (variant, entry["target"], entry["delegate"])
    common = {"target": job[1], "delegate": job[2], "delegate_applied": entry.get("delegate_applied") or "",
              "status": entry["status"], "error": entry.get("error") or "", "baseline_target": base or "",
              "precision": _precision(entry)}
    if entry["status"] != "ok":
        return [{**common, "group": "", "n": 0, **{k: math.nan for k, t in TABLE_COLUMNS.items()
                                                    if t == "float64"}}]
    m = run.metrics
    mine = m[(m.variant == job[0]) & (m.target == job[1]) & (m.delegate == job[2])]
    flips = _against_baseline(run, job, base)
    noise = entry.get("repeat") or {}
    latency = noise.get("latency_ms_median", entry.get("latency_ms_per_sample"))
    out = []
    for row in mine.itertuples(index=False):
        group = "" if row.scope == OVERALL else qualified(row.attribute, row.group)
        diff = flips.get(group) or {}
        out.append({**common, "group": group, "n": int(row.n), "acc": row.acc, "acc_drop": row.acc_drop,
                    "drop_quantization": row.drop_quantization, "drop_delegate": row.drop_delegate,
                    "flip_vs_ref": _num(diff.get("flip_rate")),
                    "max_abs_dlogit_vs_ref": _num(diff.get("max_abs_dlogit")),
                    "max_step_diff": _num(diff.get("max_step_diff")),
                    "frac_logits_diff": _num(diff.get("frac_logits_diff")),
                    "latency_ms_per_sample": _num(latency),
                    "noise_max_abs_dlogit": _num(noise.get("max_abs_logit_diff")),
                    "noise_latency_spread": _num(noise.get("latency_rel_spread"))})
    return out


def _against_baseline(run: RunData, job, base: str | None) -> dict[str, dict[str, float]]:
    """{group ("" = all): :func:`harness.metrics.steps.pair_diff` of ``job`` against the reference-kernel
    job} -- flips, logits that differ, and the largest difference in output steps and in logit units."""
    if base is None:
        return {}
    mine = run.logits(*job)
    theirs = run.logits(job[0], base, BASELINE_DELEGATE)
    order = pd.Index(theirs.ids).get_indexer(mine.ids)
    if (order < 0).any() or len(order) != len(theirs.ids):
        return {}
    z, zb = mine.values, theirs.values[order]
    scale = manifest_output_scales(run.manifest).get(job[0])
    cells = run.test_set().set_index("id").loc[mine.ids, "group"].to_numpy().astype(str)
    per_attribute = expand(pd.DataFrame({"group": cells, "_row": np.arange(len(cells))}), run.attributes)
    out = {"": pair_diff(z, zb, scale)}
    for (attribute, g), part in per_attribute.groupby(["attribute", "group"], sort=True):
        sel = part["_row"].to_numpy()
        out[qualified(str(attribute), str(g))] = pair_diff(z[sel], zb[sel], scale)
    return out


def _precision(entry: dict) -> str:
    asked, told = entry.get("precision_requested"), entry.get("precision_reported")
    return f"{asked}/{told}" if asked else "unknown"


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def format_delegate_table(table: pd.DataFrame, variant: str) -> str:
    """The side-by-side table the CLI prints: per device x delegate its overall row, then groups."""
    if table.empty:
        return f"(no job of variant {variant!r} in the run)"
    wd, wl = name_width(table.target, 12), name_width(table.delegate, 10)  # names are never cut
    wg = name_width(list(table.group) + ["(all)"], 12)
    header = (f"{'device':{wd}} {'delegate':{wl}} {'group':{wg}} {'n':>5} {'acc%':>6} {'drop_pp':>8} "
              f"{'quant_pp':>8} {'deleg_pp':>8} {'flip_ref%':>9} {'logits≠%':>8} {'steps':>5} {'max|Δz|':>8} {'ms/smp':>7} {'noise|Δz|':>9} "
              f"{'precision':>13}")
    lines = [f"variant {variant}: each delegate against FP32 and against the CPU reference kernels",
             header, "-" * len(header)]
    for row in table.itertuples(index=False):
        first = row.group == ""
        dev = fit_cell(row.target, wd) if first else ""
        dlg = fit_cell(row.delegate, wl) if first else ""
        if row.status != "ok":  # the error's first line, wrapped below the delegate's name
            why = textwrap.wrap("FAILED: " + row.error.splitlines()[0] if row.error else "FAILED",
                                width=len(header) - wd - wl - 2, max_lines=ERROR_LINES, placeholder=" …")
            lines += [f"{dev if i == 0 else '':{wd}} {dlg if i == 0 else '':{wl}} {part}"
                      for i, part in enumerate(why)]
            continue
        lines.append(
            f"{dev:{wd}} {dlg:{wl}} {fit_cell('(all)' if first else row.group, wg):{wg}} {row.n:>5} "
            f"{100 * row.acc:6.1f} {nan_cell(row.acc_drop, '+.2f', 100):>8} "
            f"{nan_cell(row.drop_quantization, '+.2f', 100):>8} {nan_cell(row.drop_delegate, '+.2f', 100):>8} "
            f"{nan_cell(row.flip_vs_ref, '.2f', 100):>9} {nan_cell(row.frac_logits_diff, '.2f', 100):>8} "
            f"{nan_cell(row.max_step_diff, '.0f', missing='-'):>5} {nan_cell(row.max_abs_dlogit_vs_ref, '.3g'):>8} "
            f"{nan_cell(row.latency_ms_per_sample, '.3f') if first else '':>7} "
            f"{nan_cell(row.noise_max_abs_dlogit, '.3g') if first else '':>9} "
            f"{fit_cell(row.precision, 13) if first else '':>13}")
        if first and "unproven)" in row.delegate_applied:
            lines.append(f"{'':{wd}} {row.delegate_applied}: the runtime did not prove the delegate "
                         f"computed this job (allow_unproven = true kept it)")
        if first and "(partial" in row.delegate_applied:
            lines.append(f"{'':12} {row.delegate_applied}: only part of the graph ran on the delegate, the "
                         f"runtime does not say which ops (allow_partial = true ran it)")
    ok = table[table.status == "ok"]
    if len(ok) and (ok.baseline_target == "").all():
        lines.append("no device finished the variant on the reference kernels, so the drop is not split and "
                     "nothing is compared with them: add a device that can run them (e.g. --device local)")
    lines += ["drop_pp = accuracy drop vs FP32 (pp) = quant_pp (FP32 -> variant on reference kernels) "
              "+ deleg_pp (reference kernels -> delegate)",
              "flip_ref%, logits≠%, steps, max|Δz| = against the same variant on the CPU reference kernels "
              "(logits that differ; largest difference in output quantization steps, - for float outputs; "
              "in logit units); "
              "noise|Δz| = between repeated runs (--repeat); precision = asked/reported by the runtime "
              "(model: the model's own types; unknown: the runtime did not say)"]
    return "\n".join(lines)
