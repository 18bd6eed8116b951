"""The TFLite converter (tf.lite.TFLiteConverter) for fp32, dynamic, float16, int8 and int16x8.

:func:`converter_request` says, as plain JSON, what the converter is told for a variant (this is
recorded in the artifact's recipe and is part of its cache key); :func:`run_converter` does it.
Inputs are a Keras 3 model (``from_keras_model``) or a SavedModel folder (``from_saved_model``).
The representative dataset yields one calibration sample per step, as ``[x[i:i+1]]`` (with a fixed
batch N: N samples per step, the only shape the model takes).

With ``options.fixed_batch = N`` the model is first exported to a temporary SavedModel whose
serving signature has batch N fixed -- a Keras model through ``keras.export.ExportArchive`` with
``training=False``, as ``from_keras_model`` itself does, a SavedModel by wrapping its
``serving_default`` signature -- so the .tflite has ``shape_signature`` [N, ...] and a Flatten
becomes one static RESHAPE instead of SHAPE/STRIDED_SLICE/PACK/RESHAPE. Input and output names
and the signature key stay those of the dynamic-batch conversion.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import tempfile
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
USEFUL_LINES = 6          # converter errors run to pages of MLIR dumps; the op at fault is in the first lines
MAX_MESSAGE_CHARS = 800   # ... and one of those lines can be long: a table cell is not the place for it
MLIR_LOCATION = "<unknown>:"  # each diagnostic starts "<unknown>:0: error: loc(...): the message"
NOISE_PREFIXES = ("note:", "%", "^bb", '"', "}", "Details:", "tf.", "tfl.", "See instructions")  # dumps, not causes


def converter_request(variant: str, options: QuantizeOptions) -> dict[str, Any]:
    """The converter settings of ``variant`` (JSON-ready); ``fixed_batch`` only when fixed, so a
    dynamic-batch variant keeps the recipe (and cache key) it always had."""
    request = _variant_settings(variant, options)
    if options.fixed_batch:
        request["fixed_batch"] = options.fixed_batch
    return request


def _variant_settings(variant: str, options: QuantizeOptions) -> dict[str, Any]:
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
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings(), \
                tempfile.TemporaryDirectory(prefix="qskew-fixed-batch-") as tmp:
            warnings.filterwarnings("ignore", message=BENIGN_WARNING)
            if options.fixed_batch:
                fixed = Path(tmp) / "saved_model"
                _export_fixed_batch(model, options.fixed_batch, fixed, tf)
                converter = tf.lite.TFLiteConverter.from_saved_model(str(fixed))
            elif isinstance(model, Path):
                converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
            else:
                converter = tf.lite.TFLiteConverter.from_keras_model(model)
            _configure(converter, request, calibration, tf)
            data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        full = str(exc).strip() or type(exc).__name__
        short = first_useful_lines(full)
        raise ConversionError(variant, short, detail=full if short != full else None) from exc
    finally:
        if chatter.getvalue():
            log.debug("converter output for %s:\n%s", variant, chatter.getvalue())
    return bytes(data)


def _export_fixed_batch(model: Any, batch: int, out_dir: Path, tf) -> None:
    """Write ``model`` (keras.Model or SavedModel folder) as a SavedModel whose serving signature
    takes batch ``batch``; names of inputs and outputs are kept."""
    if isinstance(model, Path):
        _export_saved_model_fixed(model, batch, out_dir, tf)
        return
    import keras

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(f"fixed_batch = {batch} needs a Functional or Sequential Keras model "
                         "(one with model.inputs); export another model as a SavedModel folder")
    specs = [tf.TensorSpec([batch, *t.shape[1:]], t.dtype, name=t.name) for t in inputs]
    signature = [specs] if len(specs) > 1 else specs  # as from_keras_model passes a multi-input
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False), signature)
    archive.write_out(str(out_dir), verbose=False)


def _export_saved_model_fixed(folder: Path, batch: int, out_dir: Path, tf) -> None:
    loaded = tf.saved_model.load(str(folder))
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{folder} has no serving_default signature to fix the batch of")
    serve = loaded.signatures["serving_default"]
    _, by_name = serve.structured_input_signature
    names = sorted(by_name)
    specs = [tf.TensorSpec([batch, *by_name[n].shape[1:]], by_name[n].dtype, name=n) for n in names]

    @tf.function(input_signature=specs)
    def fixed(*tensors):
        return serve(**dict(zip(names, tensors)))

    module = tf.Module()
    module.loaded, module.fixed = loaded, fixed  # tracked, so the variables are saved too
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": fixed.get_concrete_function()})


def _configure(converter, request: dict, calibration: Calibration | None, tf) -> None:
    """Apply ``request`` to a TFLiteConverter."""
    if request["optimizations"]:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if "supported_types" in request:
        converter.target_spec.supported_types = [tf.float16]
    if request.get("representative_dataset"):
        if calibration is None:
            raise ValueError("a representative dataset is required")
        converter.representative_dataset = _representative(calibration, request.get("fixed_batch", 1))
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name)
                                               for name in request["supported_ops"]]
        dtypes = {"int8": tf.int8, "int16": tf.int16, "float32": tf.float32}
        converter.inference_input_type = dtypes[request["inference_input_type"]]
        converter.inference_output_type = dtypes[request["inference_output_type"]]


def _representative(calibration: Calibration, step: int = 1):
    """One calibration batch of ``step`` samples per step (a trailing partial batch is dropped;
    with fewer samples than ``step`` they are repeated to fill one batch)."""
    import numpy as np

    x = calibration.x_float
    if x.shape[0] < step:
        x = np.resize(x, (step, *x.shape[1:]))

    def samples():
        for i in range(0, x.shape[0] - step + 1, step):
            yield [x[i:i + step]]

    return samples


def first_useful_lines(text: str) -> str:
    """The first ``USEFUL_LINES`` lines of a converter error that say what went wrong, joined by
    " | ": MLIR locations (``loc(...)``), notes and IR dumps dropped, repeats dropped.

    >>> first_useful_lines("<unknown>:0: error: loc(fused[\"X\"]): 'tf.X' op is neither a custom op nor a flex op")
    "'tf.X' op is neither a custom op nor a flex op"
    """
    kept: list[str] = []
    for raw in text.replace(MLIR_LOCATION, "\n" + MLIR_LOCATION).splitlines():
        line = _without_location(raw.strip())
        if not line or line.startswith(NOISE_PREFIXES) or line in kept:
            continue
        kept.append(line)
        if len(kept) == USEFUL_LINES:
            break
    short = " | ".join(kept) or text.strip()
    return short if len(short) <= MAX_MESSAGE_CHARS else short[:MAX_MESSAGE_CHARS] + " [...]"


def _without_location(line: str) -> str:
    """``<unknown>:0: error: loc(...): message`` -> ``message``."""
    if line.startswith(MLIR_LOCATION):
        line = line.split(": ", 1)[1] if ": " in line else ""
        line = line.removeprefix("error: ").removeprefix("warning: ")
    if line.startswith("loc("):
        depth = 0
        for i, ch in enumerate(line[3:], start=3):
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                return line[i + 1:].lstrip(": ").strip()
        return ""
    return line
