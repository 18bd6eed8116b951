"""The report's "bisect" section: what ``qskew bisect`` left in ``RUN_DIR/bisect/bisect.csv``.

Per group, the line the terminal printed (the tensor most samples first differ at) and a per-layer
chart: for each tensor in execution order, the largest difference of job A from job B among the
group's samples (in quantization steps, or relative for float tensors) and the share of the group's
samples whose first differing tensor it is. "" when bisect has not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.metrics.bisect import short_name, summarize
from harness.records.bisect import BISECT_DIR, BISECT_FILE, FILE_COLUMNS
from harness.report.markup import esc, html_table, img, num

if TYPE_CHECKING:
    import pandas as pd

CHART = "bisect"


def read_bisect(run_dir: Path) -> "pd.DataFrame | None":
    """RUN_DIR/bisect/bisect.csv, or None when there is none (or it lacks the expected columns)."""
    import pandas as pd

    path = Path(run_dir) / BISECT_DIR / BISECT_FILE
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"sample": str, "group": str, "options": str, "weights": str, "tensor": str})
    return table if set(FILE_COLUMNS) <= set(table.columns) else None


def bisect_section(run_dir: Path) -> str:
    """The section's HTML ("" without bisect.csv)."""
    table = read_bisect(run_dir)
    if table is None or not len(table):
        return ""
    table = table.assign(exceeds=table["exceeds"].astype(bool), first=table["first"].astype(bool),
                         weights=table["weights"].fillna(""), options=table["options"].fillna(""))
    summary = summarize(table)
    rows = [[r.group, r.n, r.n_differ, short_name(r.tensor) if r.tensor else "–", r.op, r.dtype, r.weights,
             r.n_first, num(r.max_diff, "g"), r.unit] for r in summary.itertuples(index=False)]
    jobs = f"{table['job_a'].iloc[0]} against {table['job_b'].iloc[0]}"
    return (f"<p>{esc(jobs)}: per group, the tensor most chosen samples first differ at.</p>"
            + html_table(["group", "samples", "differ", "first differing tensor", "op", "dtype", "weights",
                          "samples first there", "max diff", "unit"], rows, left=(0, 3, 4, 5, 6, 9))
            + img({CHART: layer_chart(table)}, CHART)
            + "<p class=\"note\">Both jobs ran again on their own devices with every intermediate tensor kept "
              "(delegated jobs as a model copy with every op output promoted to an output). Chart: per tensor in "
              "execution order, the largest difference among each group's samples, in quantization steps "
              "(relative for float tensors).</p>")


def layer_chart(table: "pd.DataFrame") -> bytes:
    """Per tensor (execution order), one line per group: the share of the group's samples that differ
    there (top) and the largest difference among them (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from harness.report.plots import SERIES_COLORS, to_png

    order = table.drop_duplicates("order").sort_values("order")
    fig = Figure(figsize=(8, 4.6))
    share_ax, diff_ax = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    for i, (group, part) in enumerate(table.groupby("group", sort=True)):
        by_tensor = part.groupby("order")
        style = dict(marker="o", color=SERIES_COLORS[i % len(SERIES_COLORS)], label=str(group))
        share_ax.plot(range(len(order)), by_tensor["exceeds"].mean().reindex(order["order"]).to_numpy(), **style)
        diff_ax.plot(range(len(order)), by_tensor["max_diff"].max().reindex(order["order"]).to_numpy(), **style)
    share_ax.set_ylabel("samples differing")
    share_ax.set_ylim(-0.05, 1.05)
    share_ax.set_xticks(range(len(order)))
    share_ax.set_xticklabels([])
    share_ax.legend(fontsize=8)
    diff_ax.set_ylabel("max difference")
    diff_ax.set_xticks(range(len(order)))
    diff_ax.set_xticklabels([f"{short_name(t)} ({op})" for t, op in zip(order["tensor"], order["op"])], rotation=40,
                            ha="right", fontsize=7)
    return to_png(fig)
