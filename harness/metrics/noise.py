"""Run-to-run noise of a device: the same job run N times (``[run] repeat``, ``--repeat N``).

A delegate's difference from the reference kernels means something only if it is larger than
what the same delegate does between two runs of the same job. :func:`repeat_noise` compares every
repeat with the first run (the one whose logits the run directory keeps) and returns a
:class:`~harness.records.RepeatNoise` (stored as a summary entry's ``repeat``)::

    runs                    how many runs finished (the first included)
    failed                  error messages of repeats that failed
    identical               every repeat gave bit-identical logits
    max_abs_logit_diff      max over repeats and samples of |z_repeat - z_first|
    flip_rate_max           largest share of samples whose predicted class changed in a repeat
    latency_ms_per_sample   each run's latency per sample (ms), first run first
    latency_ms_median, latency_ms_min, latency_ms_max
    latency_rel_spread      (max - min) / median of the latencies: the timing noise to beat
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.records import DeviceRun, RepeatNoise


def repeat_noise(runs: Sequence[DeviceRun]) -> RepeatNoise:
    """Noise of ``runs`` (the same job, first run first); the first run must have succeeded."""
    first = runs[0]
    ok = [r for r in runs if r.ok]
    base = np.asarray(first.logits, dtype=np.float64)
    diffs, flips = [0.0], [0.0]
    for r in ok[1:]:
        z = np.asarray(r.logits, dtype=np.float64)
        diffs.append(float(np.max(np.abs(z - base))) if z.size else 0.0)
        flips.append(float(np.mean(z.argmax(axis=1) != base.argmax(axis=1))) if len(z) else 0.0)
    latencies = [r.latency_ms_per_sample() for r in ok]
    known = np.array([x for x in latencies if x is not None], dtype=np.float64)
    median = float(np.median(known)) if known.size else None
    return RepeatNoise(
        runs=len(ok), failed=tuple(str(r.error) for r in runs if not r.ok),
        identical=all(d == 0.0 for d in diffs), max_abs_logit_diff=max(diffs),
        flip_rate_max=max(flips), latency_ms_per_sample=tuple(latencies),
        latency_ms_median=median,
        latency_ms_min=float(known.min()) if known.size else None,
        latency_ms_max=float(known.max()) if known.size else None,
        latency_rel_spread=float((known.max() - known.min()) / median) if median else None,
    )
