"""The QAT job folder: what the host writes for the QAT process and what that process writes back.

QAT runs in a child process of its own (``python -m harness.mitigate.qat JOB_DIR/job.json``)
because ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is imported and is process-wide.
The host (``harness.mitigate.mitigate``) and the child share this module; it imports numpy only.

Job folder (written by the host)::

    job.json            QatJob.to_json(): the model, training options, kept layers, file names
    weights.npz         FP32 weights, key "<layer name>/<i>" = the layer's i-th weight (Keras order)
    model_config.json   a user model's Keras 3 config (absent for a built-in model)
    train_x.npy         training samples in their storage dtype; preprocess is in job.json
    train_y.npy         int64 labels
    train_group.npy     group labels ('<U' dtype: np.load with allow_pickle=False)
    calibration_x.npy   float32 representative dataset for the int8 export (the plain int8's)

Outputs (written by the child)::

    int8.tflite         the QAT model converted to full integer (int8 in and out)
    weights_qat.npz     the fine-tuned float weights, same keys as weights.npz (fake-quant removed)
    result.json         QatResult.to_json(): layers annotated / kept float, history, timings
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

JOB_FILE = "job.json"
WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "model_config.json"
TRAIN_X_FILE = "train_x.npy"
TRAIN_Y_FILE = "train_y.npy"
TRAIN_GROUP_FILE = "train_group.npy"
CALIBRATION_FILE = "calibration_x.npy"
INT8_FILE = "int8.tflite"
QAT_WEIGHTS_FILE = "weights_qat.npz"
RESULT_FILE = "result.json"
JOB_SCHEMA = 2  # bump when a field changes meaning; the child refuses other versions (2: builder)


@dataclass(frozen=True)
class QatJob:
    """Everything the QAT process needs besides the arrays in the job folder.

    ``builder`` is the "module:function" of a built-in model's ``build(input_shape, num_classes,
    seed)``, given by the command layer (the core never imports ``models/``); the child imports it to
    rebuild the architecture. When None the model is rebuilt from ``model_config.json``.
    ``kept_layers`` stay float during QAT (not annotated).
    """

    model_label: str                  # how errors name the model: "small_cnn" or a file path
    builder: str | None
    input_shape: tuple[int, ...]
    num_classes: int
    seed: int
    kept_layers: tuple[str, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    balanced_sampling: bool
    group_weighted_loss: bool
    preprocess_scale: float = 1.0
    preprocess_offset: float = 0.0
    schema: int = JOB_SCHEMA

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["kept_layers"] = list(self.kept_layers)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "QatJob":
        if raw.get("schema") != JOB_SCHEMA:
            raise ConfigError(f"QAT job schema {raw.get('schema')!r} is not {JOB_SCHEMA}")
        return cls(**{**raw, "input_shape": tuple(raw["input_shape"]),
                      "kept_layers": tuple(raw["kept_layers"])})


@dataclass(frozen=True)
class QatResult:
    """What the QAT process reports in ``result.json``.

    ``annotated_layers`` trained with 8-bit fake quantization; ``kept_layers`` stayed float by
    request; ``unsupported_layers`` stayed float because tfmot cannot quantize them.
    """

    annotated_layers: tuple[str, ...]
    kept_layers: tuple[str, ...]
    unsupported_layers: tuple[str, ...]
    history: dict[str, list[float]]
    epoch_group_shares: tuple[dict[str, float], ...]   # group shares of each fine-tuning epoch
    group_weights: dict[str, float] | None               # loss weight per group, or None
    train_s: float
    export_s: float
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("annotated_layers", "kept_layers", "unsupported_layers", "epoch_group_shares"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "QatResult":
        return cls(**{**raw, **{k: tuple(raw[k]) for k in ("annotated_layers", "kept_layers",
                                                           "unsupported_layers", "epoch_group_shares")}})


def write_json(path: Path, obj: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def builder_ref(build: Any) -> str:
    """The "module:function" the QAT child imports ``build`` back from (a module-level function)."""
    return f"{build.__module__}:{build.__qualname__}"
