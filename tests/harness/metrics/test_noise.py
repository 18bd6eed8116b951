"""Run-to-run noise of repeated jobs, against hand-computed values."""

import numpy as np
import pytest

from harness.metrics.noise import repeat_noise
from harness.records import DeviceRun, Timings


def _run(z, per_batch_s=(0.01,), error=None):
    return DeviceRun("int8", "dev", "gpu", "a" * 64, logits=None if error else np.asarray(z, np.float32),
                     timings=Timings(per_batch_s=tuple(per_batch_s)), error=error)


def test_noise_is_measured_against_the_first_run():
    z0 = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.5], [0.2, 0.1]])
    z1 = z0 + [[0, 0], [0, 0], [0, 0.25], [0, 0.2]]   # last sample flips (0.2 vs 0.3)
    z2 = z0 + [[0.5, 0], [0, 0], [0, 0], [0, 0]]
    noise = repeat_noise([_run(z0, [0.004]), _run(z1, [0.008]), _run(z2, [0.006])])
    assert noise.runs == 3 and noise.failed == () and not noise.identical
    assert noise.max_abs_logit_diff == pytest.approx(0.5)
    assert noise.flip_rate_max == pytest.approx(0.25)
    assert noise.latency_ms_per_sample == pytest.approx((1.0, 2.0, 1.5))
    assert noise.latency_ms_median == pytest.approx(1.5)
    assert noise.latency_rel_spread == pytest.approx((2.0 - 1.0) / 1.5)


def test_identical_repeats_and_a_failed_repeat():
    z = np.eye(3)
    noise = repeat_noise([_run(z), _run(z), _run(None, error="delegate: lost the GPU")])
    assert noise.identical and noise.max_abs_logit_diff == 0.0 and noise.runs == 2
    assert noise.failed == ("delegate: lost the GPU",)
