"""Tunables of the quantize stage, validated once when built (QuantizeOptions is frozen).

The calibration_* fields say how the caller should build the representative dataset
(``make_calibration(train, o.calibration_size, o.calibration_strategy, o.seed)``); the mixed_*
fields choose which layers the ``mixed`` variant raises to 16-bit activations; check_batch_size is
the batch the host prepare check resizes a dynamic-batch model to; fixed_batch (0 = dynamic) fixes
the batch dimension of every variant at conversion (the Edge TPU needs 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import ConfigError

CALIBRATION_STRATEGIES = ("random", "proportional", "balanced")
INT16X8_IO_DTYPES = ("float32", "int16")  # converter default is float32; int16 keeps 16-bit I/O


@dataclass(frozen=True)
class QuantizeOptions:
    """How variants are built.

    mixed_layers_regex: a regex searched (``re.search``) in each op's scope, i.e. its output
    tensor names joined by ";" plus a trailing ";" (ai-edge-quantizer's convention); every matching
    quantizable op gets 16-bit activations. When None, the last ``mixed_last_n`` quantizable ops
    (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, ...) in execution order are raised.
    """

    calibration_size: int = 256
    calibration_strategy: str = "random"
    seed: int = 0
    mixed_layers_regex: str | None = None
    mixed_last_n: int = 2
    check_batch_size: int = 64
    int16x8_io: str = "float32"
    fixed_batch: int = 0

    def __post_init__(self) -> None:
        if self.calibration_size < 1:
            raise ConfigError(f"calibration_size must be >= 1, got {self.calibration_size}")
        if self.calibration_strategy not in CALIBRATION_STRATEGIES:
            raise ConfigError(f"unknown calibration strategy {self.calibration_strategy!r}; "
                              f"known: {', '.join(CALIBRATION_STRATEGIES)}")
        if self.mixed_last_n < 1:
            raise ConfigError(f"mixed_last_n must be >= 1, got {self.mixed_last_n}")
        if self.check_batch_size < 1:
            raise ConfigError(f"check_batch_size must be >= 1, got {self.check_batch_size}")
        if self.fixed_batch < 0:
            raise ConfigError(f"fixed_batch must be 0 (dynamic batch) or a batch size >= 1, "
                              f"got {self.fixed_batch}")
        if self.int16x8_io not in INT16X8_IO_DTYPES:
            raise ConfigError(f"int16x8_io must be one of {', '.join(INT16X8_IO_DTYPES)}, "
                              f"got {self.int16x8_io!r}")
        if self.mixed_layers_regex is not None:
            try:
                re.compile(self.mixed_layers_regex)
            except re.error as exc:
                raise ConfigError(f"mixed_layers_regex {self.mixed_layers_regex!r} is not a "
                                  f"valid regex: {exc}") from exc

    def to_json(self) -> dict:
        return {"calibration_size": self.calibration_size,
                "calibration_strategy": self.calibration_strategy, "seed": self.seed,
                "mixed_layers_regex": self.mixed_layers_regex, "mixed_last_n": self.mixed_last_n,
                "check_batch_size": self.check_batch_size, "int16x8_io": self.int16x8_io,
                "fixed_batch": self.fixed_batch}

    @property
    def prepare_batch_size(self) -> int:
        """The batch the host prepare check runs at: the fixed batch, else check_batch_size."""
        return self.fixed_batch or self.check_batch_size
