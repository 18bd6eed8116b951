"""Differences between two runs of the same variant, in quantization steps of its output tensor.

Why steps: an int8 model's logits can only move in multiples of the output scale, so "max |Δlogit|
= 0.222" says less than "one step". Two runs of one variant (two targets, or two delegates) are
compared sample by sample; integer-output variants in steps, float ones in raw logit units.

- :func:`step_diff`: ``|a - b| / scale`` rounded to whole steps (the stored logits are dequantized
  float32, so the quotient is an integer up to float32 rounding);
- :func:`manifest_output_scales`: each variant's output scale, from the manifest's ``variants`` (their
  ``outputs``, as :class:`harness.records.ModelArtifact` writes them);
- :func:`pair_diff`: the numbers of one pair of runs over a set of samples: ``flip_rate`` (share of
  samples whose predicted class differs), ``frac_logits_diff`` (share of logits that differ: by at
  least one step, or at all for float outputs), ``max_step_diff`` (NaN for float outputs) and
  ``max_abs_dlogit`` (raw units);
- :func:`fill_step_columns`: the metrics table's :data:`STEP_COLUMNS`, every job against its
  baseline, the same variant's reference-kernel job (``harness.metrics.groups.baseline_target``),
  overall and per group. They depend on two jobs, so the run directory computes them when it is
  read, as it does the drop attribution.

>>> import numpy as np
>>> a = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
>>> pair_diff(a, a + np.float32(0.25) * np.array([[0, 1], [0, 0]], np.float32), 0.25)["max_step_diff"]
1.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from harness.metrics.attributes import Attributes

DIFF_COLUMNS = ("n", "flip_rate", "frac_logits_diff", "max_step_diff", "max_abs_dlogit")
STEP_COLUMNS = ("max_step_diff", "frac_logits_diff")  # the metrics table's columns filled here
_JOB = ["variant", "target", "delegate"]


def manifest_output_scales(manifest: dict) -> dict[str, float | None]:
    """{variant: its output tensor's scale} from a run's manifest; None for float outputs (scale 0)
    and for a variant with other than one output tensor (nothing to measure steps of)."""
    scales: dict[str, float | None] = {}
    for v in manifest.get("variants") or []:
        outputs = v.get("outputs") or []
        scale = float(outputs[0].get("scale") or 0.0) if len(outputs) == 1 else 0.0
        scales[v.get("variant")] = scale or None
    return scales


def step_diff(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Whole quantization steps between dequantized logits ``a`` and ``b`` of one output tensor."""
    if not scale > 0:
        raise ValueError(f"an output scale must be positive, not {scale!r}")
    return np.rint(np.abs(a.astype(np.float64) - b.astype(np.float64)) / scale)


def pair_diff(a: np.ndarray, b: np.ndarray, scale: float | None) -> dict[str, float]:
    """:data:`DIFF_COLUMNS` for logits ``a`` and ``b`` (same samples, same order); ``scale`` is the
    output scale of an integer-output variant, None (or 0) for float outputs."""
    if a.shape != b.shape:
        raise ValueError(f"logits of shape {a.shape} and {b.shape} cannot be compared")
    n = int(a.shape[0]) if a.ndim else 0
    if n == 0:
        return {"n": 0, "flip_rate": math.nan, "frac_logits_diff": math.nan, "max_step_diff": math.nan,
                "max_abs_dlogit": math.nan}
    abs_diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    flips = np.argmax(a, axis=1) != np.argmax(b, axis=1)
    if scale:
        steps = step_diff(a, b, scale)
        differs, max_steps = steps >= 1, float(steps.max())
    else:
        differs, max_steps = abs_diff > 0, math.nan
    return {"n": n, "flip_rate": float(flips.mean()), "frac_logits_diff": float(differs.mean()),
            "max_step_diff": max_steps, "max_abs_dlogit": float(abs_diff.max())}


def fill_step_columns(metrics: "pd.DataFrame", predictions: "pd.DataFrame",
                      scales: Mapping[str, float | None], attrs: "Attributes | None") -> "pd.DataFrame":
    """``metrics`` with :data:`STEP_COLUMNS` of every row: its job against the same variant's
    reference-kernel job on :func:`~harness.metrics.groups.baseline_target`, over the row's samples.

    ``predictions`` holds every job's rows (the run directory's predictions table: id, group
    -- the cell --, variant, target, delegate, logits); ``scales`` maps a variant to its output
    scale (:func:`manifest_output_scales`). NaN where the variant has no reference-kernel job, where
    the two jobs do not hold the same samples, and ``max_step_diff`` for float outputs (their
    ``frac_logits_diff`` counts logits that differ at all). The reference-kernel job that is its
    own baseline gets 0.
    """
    from harness.metrics.groups import BASELINE_DELEGATE, baseline_target

    out = metrics.assign(**{c: np.nan for c in STEP_COLUMNS})
    if not len(out) or not len(predictions):
        return out
    jobs = {tuple(map(str, job)): rows for job, rows in predictions.groupby(_JOB, sort=False).indices.items()}
    with_ref: dict[str, set] = {}
    for variant, target, delegate in jobs:
        if delegate == BASELINE_DELEGATE:
            with_ref.setdefault(variant, set()).add(target)
    keys = zip(out["variant"], out["target"], out["delegate"], out["attribute"], out["group"])
    where = {key: i for i, key in enumerate(keys)}
    columns = [out.columns.get_loc(c) for c in STEP_COLUMNS]
    for (variant, target, delegate), rows in jobs.items():
        base = baseline_target(with_ref.get(variant, ()), target)
        if base is None:
            continue
        diffs = _job_against(predictions.iloc[rows], predictions.iloc[jobs[(variant, base, BASELINE_DELEGATE)]],
                             scales.get(variant), attrs)
        for (attribute, group), diff in diffs.items():
            i = where.get((variant, target, delegate, attribute, group))
            if i is not None:
                out.iloc[i, columns] = [diff[c] for c in STEP_COLUMNS]
    return out


def _job_against(mine: "pd.DataFrame", base: "pd.DataFrame", scale: float | None,
                 attrs: "Attributes | None") -> dict[tuple[str, str], dict[str, float]]:
    """{(attribute, group): pair_diff} of one job's rows against its baseline's; ("", "") is overall."""
    import pandas as pd

    from harness.metrics.attributes import expand

    order = pd.Index(base["id"]).get_indexer(mine["id"])
    if (order < 0).any() or len(order) != len(base):
        return {}
    z = np.stack(mine["logits"].to_list()).astype(np.float32)
    zb = np.stack(base["logits"].to_list()).astype(np.float32)[order]
    if z.shape != zb.shape:
        return {}
    out = {("", ""): pair_diff(z, zb, scale)}
    cells = pd.DataFrame({"group": mine["group"].astype(str).to_numpy(), "_row": np.arange(len(z))})
    for (attribute, group), part in expand(cells, attrs).groupby(["attribute", "group"], sort=True):
        rows = part["_row"].to_numpy()
        out[(str(attribute), str(group))] = pair_diff(z[rows], zb[rows], scale)
    return out
