"""Paired cells: the per-group counts that every statistic of ``harness.metrics.stats`` is a function of.

Each test item of a job falls in one of five paired cells (reference x variant), :data:`CELLS`:
both right; right->wrong; wrong->right; both wrong with the same prediction; both wrong with
different predictions. A group's five counts are sufficient statistics for everything the
statistics need: accuracies and their Wilson intervals, McNemar's b and c, flips, and the paired
bootstrap (resampling a group's items with replacement is a multinomial draw of its cell counts).

They come from either of two sources, which agree exactly (``tests/harness/metrics/test_cells.py``):

* a per-sample frame (:func:`cells_of_frame`; for a stored run, its predictions recomputed from the
  logits), what ``qskew report`` (and ``mitigate``, ``suggest-mixed``) use;
* a job's stored metrics rows (:func:`cells_from_rates`), what ``qskew signoff`` reads so that it
  needs neither pandas nor pyarrow: n and the rates acc_ref, acc, flip_rate, flip_right_to_wrong and
  flip_wrong_to_right are counts / n stored with round-trip precision, so round(rate x n) is the
  count again (exactly: the rounding error of count / n x n is far below 0.5 for any real n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.metrics.attributes import Attributes, expand
from harness.metrics.names import JOB_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

# Paired cells of one test item (reference x variant), in the order the bootstrap draws them.
CELLS = ("both_right", "right_to_wrong", "wrong_to_right", "both_wrong_same", "both_wrong_other")
COUNT_TOLERANCE = 1e-6  # |rate x n - round(rate x n)| above this: the rate is not a count / n (a corrupt file)


@dataclass(frozen=True, eq=False)
class GroupCells:
    """The cell counts of one job's groups of one attribute: ``counts[g]`` is group ``names[g]``'s
    :data:`CELLS` (names sorted)."""

    job: tuple[str, str, str]
    attribute: str
    names: tuple[str, ...]
    counts: np.ndarray   # (groups, len(CELLS)) int64


def paired_cells(frame: "pd.DataFrame") -> np.ndarray:
    """Counts of the :data:`CELLS` of each row of a per-sample frame, as a one-hot int matrix."""
    right_ref = frame["correct_ref"].to_numpy(bool)
    right = frame["correct"].to_numpy(bool)
    same = (frame["pred_ref"].to_numpy() == frame["pred"].to_numpy())
    cells = np.stack([right_ref & right, right_ref & ~right, ~right_ref & right,
                      ~right_ref & ~right & same, ~right_ref & ~right & ~same], axis=1)
    return cells.astype(np.int64)


def cells_of_frame(frame: "pd.DataFrame", attrs: Attributes | None = None) -> list[GroupCells]:
    """The cells of every job (sorted) and attribute (in the frame's order) of a per-sample frame.

    ``attrs`` splits the frame's cell labels into its attributes (``attributes.expand``); None takes
    the frame as it is (one attribute, "group", unless it has an ``attribute`` column).
    """
    frame = expand(frame, attrs) if len(frame) else frame
    out = []
    for job, part in frame.groupby(list(JOB_COLUMNS), sort=True):
        for attribute in part["attribute"].unique():
            sub = part[part["attribute"] == attribute]
            names, index = np.unique(sub["group"].to_numpy().astype(str), return_inverse=True)
            counts = np.zeros((names.size, len(CELLS)), dtype=np.int64)
            np.add.at(counts, index, paired_cells(sub))
            out.append(GroupCells(tuple(job), str(attribute), tuple(names.tolist()), counts))
    return out


def cells_from_rates(n: int, acc_ref: float, acc: float, flip_rate: float, right_to_wrong: float,
                     wrong_to_right: float) -> np.ndarray:
    """A group's :data:`CELLS` from its stored metrics (n and rates = counts / n).

    ValueError if the numbers are not the counts of n paired items (a rate that is no count / n,
    or counts that do not add up).

    Example::

        cells_from_rates(4, 0.75, 0.5, 0.5, 0.25, 0.0)   # -> [2, 1, 0, 0, 1]
    """
    n = int(n)
    if n < 1:   # group_metrics writes no empty group; its statistics would be NaN, and NaN passes every limit
        raise ValueError(f"n={n} is no group's size (a group has at least one sample)")
    counts = {}
    for name, rate in (("acc_ref", acc_ref), ("acc", acc), ("flip_rate", flip_rate),
                       ("flip_right_to_wrong", right_to_wrong), ("flip_wrong_to_right", wrong_to_right)):
        exact = float(rate) * n
        counts[name] = round(exact) if np.isfinite(exact) else -1
        if counts[name] < 0 or abs(exact - counts[name]) > COUNT_TOLERANCE:
            raise ValueError(f"{name}={rate!r} is not a count out of n={n}")
    r2w, w2r = counts["flip_right_to_wrong"], counts["flip_wrong_to_right"]
    both_right = counts["acc_ref"] - r2w
    wrong_other = counts["flip_rate"] - r2w - w2r
    cells = np.array([both_right, r2w, w2r, n - both_right - r2w - w2r - wrong_other, wrong_other], dtype=np.int64)
    if (cells < 0).any() or both_right + w2r != counts["acc"]:
        raise ValueError(f"n={n}, acc_ref={acc_ref!r}, acc={acc!r} and the flip rates are not the counts of "
                         f"n paired samples (cells {cells.tolist()})")
    return cells
