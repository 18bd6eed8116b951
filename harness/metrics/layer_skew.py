"""Where per layer a minority group loses most relative to the majority: pure frame computations.

``qskew analyze`` computes them when it writes layers.csv, ``suggest-mixed`` ranks layers by them,
and the report shows them from any run directory's layers.csv; they sit here, below all three, so
that the report never imports the analysis stage.

    >>> minority, majority = minority_majority(manifest, {"faint": 180, "standard": 539})  # doctest: +SKIP
    >>> skew_table(layers, minority, majority).head()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def minority_majority(manifest: dict, fallback_counts: dict[str, int]) -> tuple[str, str]:
    """(group with the fewest, group with the most) training samples per the manifest, ties broken by
    name order; ``fallback_counts`` (e.g. the test split's) when none are recorded."""
    counts = (((manifest.get("dataset") or {}).get("group_counts") or {}).get("train")) or fallback_counts
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return str(ranked[0][0]), str(ranked[-1][0])


SKEW_COLUMNS = ("variant", "layer", "order", "op", "rmse_minority", "rmse_majority", "rmse_ratio",
                "snr_minority_db", "snr_majority_db", "snr_gap_db", "tensor")


def skew_table(layers: "pd.DataFrame", minority: str, majority: str) -> "pd.DataFrame":
    """Per variant x layer: the minority's and majority's RMSE and SNR, their ratio and gap.

    ``snr_gap_db`` = SNR(majority) - SNR(minority): positive when the minority's signal is
    degraded more relative to its own size. Rows are sorted by variant, then by snr_gap_db (largest
    first): it is the ranking ``suggest-mixed`` uses, because RMSE alone favours a group with
    smaller activations (the same absolute rounding error is a larger share of a faint signal).
    """
    import pandas as pd

    rows = []
    for (variant, layer), part in layers.groupby(["variant", "layer"], sort=False):
        by_group = part.set_index("group")
        if minority not in by_group.index or majority not in by_group.index:
            continue
        lo, hi = by_group.loc[minority], by_group.loc[majority]
        rows.append({"variant": variant, "layer": layer, "order": int(lo["order"]), "op": lo["op"],
                     "rmse_minority": lo["rmse"], "rmse_majority": hi["rmse"],
                     "rmse_ratio": lo["rmse"] / hi["rmse"] if hi["rmse"] > 0 else np.nan,
                     "snr_minority_db": lo["snr_db"], "snr_majority_db": hi["snr_db"],
                     "snr_gap_db": _gap(hi["snr_db"], lo["snr_db"]), "tensor": lo["tensor"]})
    table = pd.DataFrame(rows, columns=list(SKEW_COLUMNS))
    return table.sort_values(["variant", "snr_gap_db"], ascending=[True, False], kind="mergesort",
                             na_position="last").reset_index(drop=True)


def _gap(a: float, b: float) -> float:
    return float(a - b) if np.isfinite(a) and np.isfinite(b) else float("nan")
