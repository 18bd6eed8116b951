"""The same variant on two devices, per group: what ``qskew demo --board`` prints under its tables.

For every (variant, delegate) that finished on both the host target and the device, the logits of
the two jobs are paired sample by sample (:mod:`harness.metrics.steps`): the share of samples whose
predicted class differs (``flip_rate``), the share of logits that differ (``frac_logits_diff``),
and the largest difference, in quantization steps of the variant's output tensor for integer-output
variants (``max_step_diff``) and in raw logit units (``max_abs_dlogit``). Each row names the two
runtimes and versions, because even the reference kernels differ across runtime versions.

Columns of :func:`target_table` (:data:`TABLE_COLUMNS`), per (variant, delegate) an overall row
(group "") then one row per group::

    variant, delegate, group, n, flip_rate, frac_logits_diff, max_step_diff, max_abs_dlogit,
    host_runtime, device_runtime
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from harness.metrics.steps import manifest_output_scales, pair_diff
from harness.rundir import RunData
from harness.text import name_width, nan_cell

TABLE_COLUMNS: dict[str, str] = {
    "variant": "str", "delegate": "str", "group": "str", "n": "int64", "flip_rate": "float64",
    "frac_logits_diff": "float64", "max_step_diff": "float64", "max_abs_dlogit": "float64",
    "host_runtime": "str", "device_runtime": "str",
}


def output_scales(run: RunData) -> dict[str, float | None]:
    """{variant: its output tensor's scale} from the manifest; None for float outputs."""
    return manifest_output_scales(run.manifest)


def target_table(run: RunData, host: str, device: str) -> pd.DataFrame:
    """Rows of TABLE_COLUMNS for every (variant, delegate) run ok on both ``host`` and ``device``."""
    entries = {(r["variant"], r["target"], r["delegate"]): r for r in run.summary.get("runs", [])
               if r["status"] == "ok"}
    pairs = sorted({(v, d) for v, t, d in entries if t == host and (v, device, d) in entries})
    scales = output_scales(run)
    tests = run.test_set().set_index("id")
    rows: list[dict] = []
    for variant, delegate in pairs:
        a, b = run.logits(variant, host, delegate), run.logits(variant, device, delegate)
        order = pd.Index(b.ids).get_indexer(a.ids)
        if (order < 0).any():
            continue  # the two jobs saw different samples: nothing to pair
        za, zb = a.values, b.values[order]
        common = {"variant": variant, "delegate": delegate,
                  "host_runtime": _runtime(entries[(variant, host, delegate)]),
                  "device_runtime": _runtime(entries[(variant, device, delegate)])}
        groups = tests.loc[a.ids, "group"].to_numpy().astype(str)
        rows.append({**common, "group": "", **pair_diff(za, zb, scales.get(variant))})
        for g in np.unique(groups):
            sel = groups == g
            rows.append({**common, "group": str(g), **pair_diff(za[sel], zb[sel], scales.get(variant))})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype(TABLE_COLUMNS) if len(table) else table


def _runtime(entry: dict) -> str:
    return f"{entry.get('runtime') or '?'} {entry.get('runtime_version') or ''}".strip()


def format_target_table(table: pd.DataFrame, host: str, device: str) -> str:
    """The table the CLI prints: per variant x delegate its overall row, then its groups."""
    if table.empty:
        return f"(no variant finished on both {host} and {device})"
    wv, wd = name_width(table.variant, 10), name_width(table.delegate, 10)  # names are never cut:
    wg = name_width(list(table.group) + ["(all)"], 12)                       # two could look alike
    header = (f"{'variant':{wv}} {'delegate':{wd}} {'group':{wg}} {'n':>5} {'flip%':>6} {'logits≠%':>8} "
              f"{'max_steps':>9} {'max|Δz|':>9}  runtimes ({host} / {device})")
    lines = [f"{device} against {host}: the same variant and delegate on both, sample by sample",
             header, "-" * len(header)]
    for row in table.itertuples(index=False):
        first = row.group == ""
        lines.append(f"{row.variant if first else '':{wv}} {row.delegate if first else '':{wd}} "
                     f"{'(all)' if first else row.group:{wg}} {row.n:>5} "
                     f"{nan_cell(row.flip_rate, '.2f', 100):>6} {nan_cell(row.frac_logits_diff, '.2f', 100):>8} "
                     f"{nan_cell(row.max_step_diff, '.0f', missing='-'):>9} "
                     f"{nan_cell(row.max_abs_dlogit, '.3g'):>9}  "
                     f"{f'{row.host_runtime} / {row.device_runtime}' if first else ''}")
    lines += ["flip% = samples whose predicted class differs; logits≠% = logits that differ (by >= 1 output "
              "step for integer outputs); max_steps = largest difference in quantization steps of the "
              "output tensor (- for float outputs); max|Δz| = in logit units"]
    return "\n".join(lines)
