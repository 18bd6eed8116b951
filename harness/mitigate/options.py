"""What ``qskew mitigate`` is asked to do (MitigationOptions), validated once when built.

Importing this module is cheap (no numpy, no TensorFlow): the CLI reads the defaults from it to
build its ``--help``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from harness.errors import ConfigError

DEFAULT_EPOCHS = 3             # small_cnn: ~2 s of QAT on 2 cores; enough to adapt to 8-bit rounding
DEFAULT_LEARNING_RATE = 1e-4   # fine-tuning, not retraining: 1/20 of small_cnn's training rate
DEFAULT_BATCH_SIZE = 32        # the built-in recipes' batch size
QAT_TIMEOUT_S = 1800.0         # the QAT process: ~15 s for small_cnn, minutes for MobileNetV2 on 2 cores


@dataclass(frozen=True)
class MitigationOptions:
    """Which mitigations to build as variants, and how.

    qat: fine-tune the FP32 model with quantization-aware training and export ``int8-qat``,
    ``mixed-qat`` and ``fp32-qat``. balanced_sampling / group_weighted_loss: how QAT fine-tunes
    (``harness.mitigate.sampling``); both need ``qat``. keep_layers_regex: Keras layer names
    (``re.search``) kept float during QAT; None keeps the layers the experiment's ``mixed`` variant
    raises to 16 bits; "" keeps none. calibration_compare: add an int8 calibrated with the other
    strategy (group-balanced vs the experiment's) next to the plain int8.
    """

    qat: bool = True
    balanced_sampling: bool = True
    group_weighted_loss: bool = False
    keep_layers_regex: str | None = None
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    calibration_compare: bool = True
    timeout_s: float = QAT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.qat and (self.balanced_sampling or self.group_weighted_loss):
            raise ConfigError("balanced sampling and the group-weighted loss shape QAT fine-tuning; "
                              "they need --qat")
        if not self.qat and not self.calibration_compare:
            raise ConfigError("nothing to do: both --no-qat and --no-calibration-compare were given")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.learning_rate}")
        if not self.timeout_s > 0:
            raise ConfigError(f"QAT timeout must be > 0 s, got {self.timeout_s}")
        if self.keep_layers_regex:
            try:
                re.compile(self.keep_layers_regex)
            except re.error as exc:
                raise ConfigError(f"--keep-layers {self.keep_layers_regex!r} is not a valid regex: "
                                  f"{exc}") from exc

    def to_json(self) -> dict:
        return asdict(self)
