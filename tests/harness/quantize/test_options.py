"""QuantizeOptions validates itself once, when built."""

import dataclasses

import pytest

from harness.errors import ConfigError
from harness.quantize.options import QuantizeOptions


def test_defaults_and_frozen():
    opts = QuantizeOptions()
    assert (opts.calibration_size, opts.calibration_strategy, opts.seed) == (256, "random", 0)
    assert (opts.mixed_layers_regex, opts.mixed_last_n, opts.check_batch_size) == (None, 2, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.seed = 1  # type: ignore[misc]
    assert opts.to_json()["int16x8_io"] == "float32"


@pytest.mark.parametrize("kwargs, message", [
    ({"calibration_size": 0}, "calibration_size"),
    ({"calibration_strategy": "stratified"}, "unknown calibration strategy 'stratified'"),
    ({"mixed_last_n": 0}, "mixed_last_n"),
    ({"check_batch_size": 0}, "check_batch_size"),
    ({"mixed_layers_regex": "conv_("}, "not a valid regex"),
    ({"int16x8_io": "int8"}, "int16x8_io"),
])
def test_bad_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        QuantizeOptions(**kwargs)
