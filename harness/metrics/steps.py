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
  ``max_abs_dlogit`` (raw units).

>>> import numpy as np
>>> a = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
>>> pair_diff(a, a + np.float32(0.25) * np.array([[0, 1], [0, 0]], np.float32), 0.25)["max_step_diff"]
1.0
"""

from __future__ import annotations

import math

import numpy as np

DIFF_COLUMNS = ("n", "flip_rate", "frac_logits_diff", "max_step_diff", "max_abs_dlogit")


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
