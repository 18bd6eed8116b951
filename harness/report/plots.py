"""The report's charts, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Every function takes the tables the report already holds (``stats.Stats.groups``, per-sample
frames, the manifest) and returns one PNG. Figures are built with ``matplotlib.figure.Figure``
directly, never through ``pyplot``, so no global state, GUI backend or display is involved and the
functions are safe to call from tests and threads. Drops are shown in percentage points, positive
meaning the variant is worse than the FP32 reference.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100                     # PNG resolution: crisp in a mail client, small enough to embed
PANEL_W_IN = 5.5              # width of one panel, inches
PANEL_H_IN = 3.2              # height of one panel, inches
MAX_DISTRIBUTION_JOBS = 12    # logit distribution rows beyond this make an unreadably tall image
REF_COLOR = "#444444"         # FP32 reference: neutral grey in every chart
WORSE_COLOR = "#c0392b"       # right -> wrong flips, drops
BETTER_COLOR = "#2e86c1"      # wrong -> right flips
SERIES_COLORS = ("#e67e22", "#8e44ad", "#16a085", "#c0392b", "#2c3e50", "#d35400", "#27ae60", "#7f8c8d")

Job = tuple[str, str, str]


def job_label(job: Sequence[str]) -> str:
    """``variant / target / delegate``, the name a job has in every chart and table."""
    return " / ".join(str(part) for part in job)


def plain_text(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """Draw with mathtext off: a "$" in a group or device name is printed, never parsed as TeX."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def to_png(fig: "Figure") -> bytes:
    """Render a figure with the Agg canvas and return the PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


@plain_text
def accuracy_plot(groups: "pd.DataFrame", title: str = "group") -> bytes:
    """Per-group accuracy of FP32 and of each variant with Wilson 95 % bars; one panel per
    target x delegate (the reference is the same in each). ``title`` names what the columns are
    ("group", or an attribute such as "sex" or "cells of sex\u00d7race")."""
    from matplotlib.figure import Figure

    panels = sorted(set(zip(groups["target"], groups["delegate"])))
    fig = Figure(figsize=(PANEL_W_IN * min(len(panels), 2), PANEL_H_IN * ((len(panels) + 1) // 2) + 0.4),
                 layout="constrained")  # keeps the suptitle clear of the panel titles
    axes = fig.subplots((len(panels) + 1) // 2, min(len(panels), 2), squeeze=False).ravel()
    for ax, (target, delegate) in zip(axes, panels):
        part = groups[(groups["target"] == target) & (groups["delegate"] == delegate)]
        _accuracy_panel(ax, part)
        ax.set_title(f"{target} / {delegate}", fontsize=10)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"Accuracy per {title} (95 % Wilson intervals)", fontsize=11)
    return to_png(fig)


def _accuracy_panel(ax: "Axes", part: "pd.DataFrame") -> None:
    names = _group_order(part)
    variants = sorted(part["variant"].unique())
    series = [("FP32 (reference)", part[part["variant"] == variants[0]], "acc_ref", REF_COLOR)]
    series += [(v, part[part["variant"] == v], "acc", SERIES_COLORS[i % len(SERIES_COLORS)])
               for i, v in enumerate(variants)]
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for k, (label, rows, col, color) in enumerate(series):
        rows = rows.set_index(rows["group"].where(rows["scope"] != "overall", "(all)")).reindex(names)
        y = 100 * rows[col].to_numpy(float)
        err = np.vstack([y - 100 * rows[f"{col}_lo"].to_numpy(float), 100 * rows[f"{col}_hi"].to_numpy(float) - y])
        ax.errorbar(x - 0.4 + width * (k + 0.5), y, yerr=err, fmt="o", ms=4, capsize=2, color=color, label=label)
    ax.set_xticks(x, names, fontsize=8, **_slanted(names))
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


@plain_text
def drop_heatmap(groups: "pd.DataFrame", title: str = "group") -> bytes:
    """Accuracy drop (pp) per job (rows: variant x target x delegate) and group (columns), with
    the bootstrap interval written in each cell; red = variant worse. ``title``: as in accuracy_plot."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    names = _group_order(groups)
    jobs = sorted(set(zip(groups["variant"], groups["target"], groups["delegate"])))
    keyed = groups.assign(_col=groups["group"].where(groups["scope"] != "overall", "(all)"))
    keyed = keyed.set_index(["variant", "target", "delegate", "_col"])
    values = np.full((len(jobs), len(names)), np.nan)
    text = [["" for _ in names] for _ in jobs]
    for i, job in enumerate(jobs):
        for j, name in enumerate(names):
            if (*job, name) in keyed.index:
                row = keyed.loc[(*job, name)]
                values[i, j] = 100 * row["acc_drop"]
                text[i][j] = (f"{values[i, j]:+.1f}\n[{100 * row['acc_drop_lo']:+.1f}, "
                              f"{100 * row['acc_drop_hi']:+.1f}]")
    limit = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0, 0.5)
    fig = Figure(figsize=(max(5.0, 1.4 * len(names) + 3.0), max(2.2, 0.55 * len(jobs) + 1.2)))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    for i in range(len(jobs)):
        for j in range(len(names)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, fontsize=8, **_slanted(names))
    ax.set_yticks(range(len(jobs)), [job_label(j) for j in jobs], fontsize=8)
    fig.colorbar(image, ax=ax, label="accuracy drop (pp), + = worse")
    ax.set_title(f"Accuracy drop vs FP32 per {title} [95 % paired bootstrap]", fontsize=11)
    return to_png(fig)


@plain_text
def distribution_plot(frames: Mapping[Job, "pd.DataFrame"], title: str | None = None) -> bytes:
    """Per-sample logit variance and margin per group, reference vs variant, one row per job
    (at most MAX_DISTRIBUTION_JOBS rows): the seed paper's mechanism, flatter logits. ``title``,
    if given, heads the figure (the attribute whose groups the boxes are)."""
    from matplotlib.figure import Figure

    jobs = sorted(frames)[:MAX_DISTRIBUTION_JOBS]
    fig = Figure(figsize=(2 * PANEL_W_IN, PANEL_H_IN * max(len(jobs), 1)))
    axes = fig.subplots(max(len(jobs), 1), 2, squeeze=False)
    for row, job in zip(axes, jobs):
        frame = frames[job]
        for ax, (col, what) in zip(row, (("logit_var", "logit variance across classes"),
                                         ("margin", "margin z_y - max other z"))):
            _paired_boxes(ax, frame, col)
            ax.set_title(f"{job_label(job)}: {what}", fontsize=9)
    if not jobs:
        axes[0, 0].text(0.5, 0.5, "no finished jobs", ha="center")
    if title is not None:
        fig.suptitle(f"Logit variance and margin per {title}", fontsize=11)
    return to_png(fig)


def _paired_boxes(ax: "Axes", frame: "pd.DataFrame", col: str) -> None:
    names = sorted(frame["group"].unique())
    data, positions, colors = [], [], []
    for i, name in enumerate(names):
        part = frame[frame["group"] == name]
        data += [part[f"{col}_ref"].to_numpy(float), part[col].to_numpy(float)]
        positions += [3 * i, 3 * i + 1]
        colors += [REF_COLOR, SERIES_COLORS[0]]
    boxes = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=False,
                       medianprops={"color": "black"})
    for patch, color in zip(boxes["boxes"], colors):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    ax.set_xticks([3 * i + 0.5 for i in range(len(names))], names, fontsize=8, **_slanted(names))
    ax.grid(axis="y", alpha=0.3)
    ax.legend([boxes["boxes"][0], boxes["boxes"][1]] if len(data) > 1 else [],
              ["FP32", "variant"], fontsize=7, loc="best")


@plain_text
def flips_plot(groups: "pd.DataFrame", title: str = "") -> bytes:
    """Flips in both directions per job and group: right -> wrong to the right (red), wrong ->
    right to the left (blue), as % of the group's samples; ``title`` adds what the groups are."""
    from matplotlib.figure import Figure

    rows = groups[groups["scope"] != "overall"].sort_values(["variant", "target", "delegate", "group"])
    labels = [f"{job_label(j)} · {g}" for j, g in
              zip(zip(rows["variant"], rows["target"], rows["delegate"]), rows["group"])]
    worse = 100 * rows["c"].to_numpy(float) / rows["n"].to_numpy(float)
    better = 100 * rows["b"].to_numpy(float) / rows["n"].to_numpy(float)
    fig = Figure(figsize=(PANEL_W_IN + 3.0, max(2.0, 0.32 * len(labels) + 1.2)))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, worse, color=WORSE_COLOR, label="right -> wrong (c)")
    ax.barh(y, -better, color=BETTER_COLOR, label="wrong -> right (b)")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("% of the group's samples")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Prediction flips vs FP32, both directions" + (f", per {title}" if title else ""), fontsize=11)
    return to_png(fig)


@plain_text
def calibration_plot(calibration_shares: Mapping[str, float], test_counts: Mapping[str, float],
                     title: str = "Group") -> bytes:
    """Share of each group in the calibration set next to its share of the test set."""
    from matplotlib.figure import Figure

    names = sorted(set(calibration_shares) | set(test_counts))
    total = float(sum(test_counts.values())) or 1.0
    calib = [100 * float(calibration_shares.get(n, 0.0)) for n in names]
    test = [100 * float(test_counts.get(n, 0)) / total for n in names]
    fig = Figure(figsize=(PANEL_W_IN, PANEL_H_IN))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x - 0.2, calib, width=0.4, color=SERIES_COLORS[0], label="calibration set")
    ax.bar(x + 0.2, test, width=0.4, color=REF_COLOR, label="test set")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("share of samples (%)")
    ax.legend(fontsize=8)
    ax.set_title(f"{title} shares: calibration vs test", fontsize=11)
    return to_png(fig)


def _slanted(names: Sequence[str]) -> dict:
    """Tick label options: level for a few short names, slanted when they would overlap (many or
    long names, such as the cells of an intersection)."""
    if sum(len(str(n)) + 2 for n in names) <= 60:
        return {}
    return {"rotation": 30, "ha": "right", "rotation_mode": "anchor"}


def _group_order(table: "pd.DataFrame") -> list[str]:
    """"(all)" first, then the groups (or cells) by name."""
    return ["(all)"] + sorted(table.loc[table["scope"] != "overall", "group"].unique().tolist())
