"""The bisect table (``harness.records.bisect``) summarised per group, and the lines the terminal shows.

Per group: how many chosen samples, how many differ anywhere, the tensor most of them first differ
at (with its op, dtype, weight quantization and the largest difference there), and how many first
differ there::

    faint: 9 of 11 flipped samples first differ at conv2_1/Relu (CONV_2D, int8, per-channel), max 3 steps
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness import text

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ("group", "n", "n_differ", "tensor", "op", "dtype", "weights", "n_first", "max_diff", "unit",
                   "partition")


def short_name(tensor: str) -> str:
    """A tensor's name as people read it: its first ``;`` part without the model's own scope
    ("small_cnn_1/conv2_1/Relu;..." -> "conv2_1/Relu")."""
    first = str(tensor).split(";")[0]
    parts = first.split("/")
    return "/".join(parts[1:]) if len(parts) >= 3 else first


def summarize(table: "pd.DataFrame") -> "pd.DataFrame":
    """One row per group (columns SUMMARY_COLUMNS); ``tensor`` is "" where no sample differs."""
    import pandas as pd

    rows = []
    for group, part in table.groupby("group", sort=True):
        n = part["sample"].nunique()
        firsts = part[part["first"]]
        row = {"group": group, "n": n, "n_differ": firsts["sample"].nunique(), "tensor": "", "op": "",
               "dtype": "", "weights": "", "n_first": 0, "max_diff": 0.0, "unit": "", "partition": -1}
        if len(firsts):
            counts = firsts.groupby("order").size()
            order = int(counts.idxmax())  # the most common first tensor; the earliest on a tie
            at = firsts[firsts["order"] == order]
            top = at.iloc[0]
            row.update(tensor=top["tensor"], op=top["op"], dtype=top["dtype"], weights=top["weights"],
                       n_first=len(at), max_diff=float(at["max_diff"].max()), unit=top["unit"],
                       partition=int(top["partition"]))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def summary_lines(summary: "pd.DataFrame", rule: str) -> list[str]:
    """The terminal's lines, one per group."""
    what = {"flipped": "flipped samples", "logits differ": "samples with differing logits"}.get(rule, "samples")
    lines = []
    for row in summary.itertuples(index=False):
        if not row.tensor:
            lines.append(f"{row.group}: none of {row.n} {what} differ at any tensor")
            continue
        facts = ", ".join(p for p in (row.op, row.dtype, row.weights) if p)
        amount = f"{row.max_diff:g} steps" if row.unit == "steps" else f"{row.max_diff:.2e} relative"
        where = f", in the partition of delegate node {row.partition}" if row.partition >= 0 else ""
        lines.append(f"{row.group}: {row.n_first} of {row.n} {what} first differ at {short_name(row.tensor)} "
                     f"({facts}), max {amount}{where}")
    return [text.escape_controls(line) for line in lines]
