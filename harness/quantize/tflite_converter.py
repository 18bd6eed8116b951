"""The TFLite converter (tf.lite.TFLiteConverter) for fp32, dynamic, float16, int8 and int16x8.

:func:`converter_request` says, as plain JSON, what the converter is told for a variant (this is
recorded in the artifact's recipe and is part of its cache key); :func:`run_converter` does it.
Inputs are a Keras 3 model (``from_keras_model``) or a SavedModel folder (``from_saved_model``).
The representative dataset yields one calibration sample per step, as ``[x[i:i+1]]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

from harness.errors import ConversionError
from harness.quantize.calibration import Calibration
from harness.quantize.options import QuantizeOptions

log = logging.getLogger(__name__)

INT8_OPS = "TFLITE_BUILTINS_INT8"
INT16X8_OPS = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
BENIGN_WARNING = "Statistics for quantized inputs were expected"  # int8 I/O without stats: normal
MAX_MESSAGE_CHARS = 4000  # converter errors can run to pages of MLIR dumps; keep the useful head


def converter_request(variant: str, options: QuantizeOptions) -> dict[str, Any]:
    """The converter settings of ``variant`` (JSON-ready)."""
    if variant == "fp32":
        return {"tool": "tflite_converter", "optimizations": []}
    if variant == "dynamic":
        return {"tool": "tflite_converter", "optimizations": ["DEFAULT"]}
    if variant == "float16":
        return {"tool": "tflite_converter", "optimizations": ["DEFAULT"],
                "supported_types": ["float16"]}
    if variant == "int8":
        return {"tool": "tflite_converter", "optimizations": ["DEFAULT"],
                "representative_dataset": True, "supported_ops": [INT8_OPS],
                "inference_input_type": "int8", "inference_output_type": "int8"}
    if variant == "int16x8":
        return {"tool": "tflite_converter", "optimizations": ["DEFAULT"],
                "representative_dataset": True, "supported_ops": [INT16X8_OPS],
                "inference_input_type": options.int16x8_io,
                "inference_output_type": options.int16x8_io}
    raise ValueError(f"variant {variant!r} is not built by the TFLite converter")


def run_converter(model: Any, variant: str, calibration: Calibration | None,
                  options: QuantizeOptions) -> bytes:
    """Convert ``model`` (keras.Model or SavedModel folder) to ``variant`` (ConversionError)."""
    import tensorflow as tf

    request = converter_request(variant, options)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=BENIGN_WARNING)
            converter = (tf.lite.TFLiteConverter.from_saved_model(str(model))
                         if isinstance(model, Path) else
                         tf.lite.TFLiteConverter.from_keras_model(model))
            _configure(converter, request, calibration, tf)
            data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise ConversionError(variant, _trim(exc)) from exc
    finally:
        if chatter.getvalue():
            log.debug("converter output for %s:\n%s", variant, chatter.getvalue())
    return bytes(data)


def _configure(converter, request: dict, calibration: Calibration | None, tf) -> None:
    """Apply ``request`` to a TFLiteConverter."""
    if request["optimizations"]:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if "supported_types" in request:
        converter.target_spec.supported_types = [tf.float16]
    if request.get("representative_dataset"):
        if calibration is None:
            raise ValueError("a representative dataset is required")
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name)
                                               for name in request["supported_ops"]]
        dtypes = {"int8": tf.int8, "int16": tf.int16, "float32": tf.float32}
        converter.inference_input_type = dtypes[request["inference_input_type"]]
        converter.inference_output_type = dtypes[request["inference_output_type"]]


def _representative(calibration: Calibration):
    x = calibration.x_float

    def samples():
        for i in range(x.shape[0]):
            yield [x[i:i + 1]]

    return samples


def _trim(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + " [...]"
