"""MitigationOptions validation (harness/mitigate/options.py)."""

import pytest

from harness.errors import ConfigError
from harness.mitigate.options import MitigationOptions


def test_defaults_are_qat_with_balanced_sampling_and_the_calibration_comparison():
    o = MitigationOptions()
    assert o.qat and o.balanced_sampling and not o.group_weighted_loss and o.calibration_compare


@pytest.mark.parametrize("kwargs, message", [
    ({"qat": False, "balanced_sampling": True}, "need --qat"),
    ({"qat": False, "balanced_sampling": False, "group_weighted_loss": True}, "need --qat"),
    ({"qat": False, "balanced_sampling": False, "calibration_compare": False}, "nothing to do"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"learning_rate": 0.0}, "learning rate"),
    ({"keep_layers_regex": "dense("}, "not a valid regex"),
])
def test_bad_combinations_are_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MitigationOptions(**kwargs)
