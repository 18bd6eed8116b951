"""The ``mixed`` variant: int8 everywhere, chosen layers at 16-bit activations (ai-edge-quantizer).

Built from the float .tflite: ``Quantizer(path)``; ``add_static_config(".*", ALL_SUPPORTED, 8, 8)``;
then, for each chosen op, ``add_static_config("^<its scope>$", <its op type>, 16, 8)`` (the later
config wins for that op); calibrate with the whole calibration set as ONE batch where the batch dimension is dynamic
(ai-edge-quantizer keeps a moving average of each batch's min/max, so per-sample batches shrink
every range towards a typical sample's and clip the tails -- on the demo CNN the int8 output range
fell from [-32, 24] to [-13, 15]; one batch gives the global min/max the TFLite converter uses);
a model converted with ``fixed_batch`` takes its ranges from the dynamic-batch float model of the
same graph (one batch again); any other fixed-batch model is calibrated in batches of its size;
quantize.
Raising only the op type (not ALL_SUPPORTED) keeps the graph's virtual OUTPUT op at 8 bits, so a
raised last layer is re-quantized to int8 and the model keeps int8 input and output.

Layers are chosen by :func:`choose_layers`: every quantizable op whose scope matches
``options.mixed_layers_regex``, or else the last ``options.mixed_last_n`` weight ops
(FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, BATCH_MATMUL) in execution order.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

from harness.errors import ConversionError
from harness.quantize.tflite_converter import first_useful_lines
from harness.quantize.calibration import Calibration
from harness.quantize.inspect import OpInfo, list_ops, open_interpreter, read_io
from harness.quantize.options import QuantizeOptions

VARIANT = "mixed"
CALIBRATION_BATCHING = "one-batch"  # recorded in the recipe (and cache key): see the docstring
DEFAULT_BITS = {"activation": 8, "weight": 8}
RAISED_BITS = {"activation": 16, "weight": 8}
# TFLite op name (as the runtime reports it) -> ai-edge-quantizer TFLOperationName, for last-N.
WEIGHT_OPS = {"FULLY_CONNECTED": "FULLY_CONNECTED", "CONV_2D": "CONV_2D",
              "DEPTHWISE_CONV_2D": "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV": "CONV_2D_TRANSPOSE",
              "BATCH_MATMUL": "BATCH_MATMUL"}
NOT_LAYERS = {"INPUT", "OUTPUT", "CUSTOM_OP", "*"}  # TFLOperationName values that are not ops
MAX_SHOWN_CHARS = 2000  # op scopes listed in a "matched nothing" error: enough to write a regex
CALIBRATION_THREADS = max(1, os.cpu_count() or 1)  # ai-edge-quantizer defaults to 16 threads


def mixed_request(options: QuantizeOptions) -> dict[str, Any]:
    """What the mixed variant is asked to do (JSON-ready; part of its cache key)."""
    selection = ({"mode": "regex", "regex": options.mixed_layers_regex}
                 if options.mixed_layers_regex is not None
                 else {"mode": "last_n", "n": options.mixed_last_n})
    request = {"tool": "ai_edge_quantizer", "base_variant": "fp32",
               "default_bits": dict(DEFAULT_BITS), "raised_bits": dict(RAISED_BITS),
               "selection": selection, "calibration_batches": CALIBRATION_BATCHING}
    if options.fixed_batch:  # built from the fixed-batch fp32 model: another artifact
        request["fixed_batch"] = options.fixed_batch
    return request


def choose_layers(ops: tuple[OpInfo, ...], options: QuantizeOptions) -> tuple[OpInfo, ...]:
    """The ops to raise to 16-bit activations; ConversionError if none qualifies."""
    if options.mixed_layers_regex is not None:
        pattern = re.compile(options.mixed_layers_regex)
        supported = _quantizable_op_names()
        chosen = tuple(op for op in ops if op.op_name in supported and pattern.search(op.scope))
        what = f"regex {options.mixed_layers_regex!r}"
    else:
        chosen = tuple(op for op in ops if op.op_name in WEIGHT_OPS)[-options.mixed_last_n:]
        what = f"last {options.mixed_last_n} weight ops"
    if not chosen:
        shown = " | ".join(f"{op.op_name} {op.scope}" for op in ops if op.outputs)
        if len(shown) > MAX_SHOWN_CHARS:
            shown = shown[:MAX_SHOWN_CHARS] + " ..."
        raise ConversionError(VARIANT, f"{what} matched no quantizable op; ops: {shown}")
    return chosen


def quantize_mixed(float_path: Path, calibration: Calibration, options: QuantizeOptions,
                   calibrate_on: Path | None = None) -> tuple[bytes, tuple[OpInfo, ...]]:
    """Quantize the float model at ``float_path``; returns (bytes, the ops raised to 16 bits).

    ``calibrate_on``: another float .tflite of the same graph whose activation ranges to use --
    the dynamic-batch one when ``float_path`` has a fixed batch, so that the ranges come from one
    batch of the whole calibration set, not from a moving average over batch-1 steps. Its tensor
    names must include those of ``float_path`` (a fixed-batch conversion only drops the SHAPE/
    STRIDED_SLICE/PACK tensors of a Flatten).
    """
    chosen = choose_layers(list_ops(float_path), options)
    x = calibration.x_float
    try:
        # Its tqdm bar ignores our --json/pipes; its calibrator warns it preserves all tensors.
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            q = _configured_quantizer(float_path, chosen)
            source = q if calibrate_on is None else _configured_quantizer(calibrate_on, chosen)
            signature, input_name = _signature_input(calibrate_on or float_path)
            qsvs = source.calibrate(
                {signature: _calibration_batches(calibrate_on or float_path, input_name, x)},
                num_threads=CALIBRATION_THREADS)
            result = q.quantize(qsvs, enable_progress_report=False)
    except ConversionError:
        raise
    except Exception as exc:  # ai-edge-quantizer raises ValueError/RuntimeError/KeyError...
        full = str(exc).strip() or type(exc).__name__
        short = first_useful_lines(full)
        raise ConversionError(VARIANT, short, detail=full if short != full else None) from exc
    return _restore_dynamic_batch(bytes(result.quantized_model)), chosen


def _configured_quantizer(float_path: Path, chosen: tuple[OpInfo, ...]):
    """A Quantizer on ``float_path``: every op at 8 bits, the ``chosen`` ones at 16."""
    from ai_edge_quantizer import qtyping, quantizer

    names = qtyping.TFLOperationName
    q = quantizer.Quantizer(Path(float_path))
    q.add_static_config(".*", names.ALL_SUPPORTED, DEFAULT_BITS["activation"], DEFAULT_BITS["weight"])
    for op in chosen:
        q.add_static_config(f"^{re.escape(op.scope)}$", names(_aeq_name(op.op_name)),
                            RAISED_BITS["activation"], RAISED_BITS["weight"])
    return q


def _calibration_batches(float_path: Path, input_name: str, x) -> list[dict]:
    """One batch of everything if the batch dimension is dynamic, else batches of the fixed size."""
    inputs, _ = read_io(float_path)
    fixed = inputs[0].shape[0] if inputs and not inputs[0].dynamic_batch else None
    step = fixed or len(x)
    return [{input_name: x[i:i + step]} for i in range(0, len(x) - step + 1, step)] or [{input_name: x}]


def int16_ops(path: Path) -> tuple[OpInfo, ...]:
    """Ops of a quantized model that compute with int16 activations (QUANTIZE ops excluded)."""
    return tuple(op for op in list_ops(path)
                 if op.op_name not in ("QUANTIZE", "DEQUANTIZE") and "int16" in op.output_dtypes)


def _restore_dynamic_batch(data: bytes) -> bytes:
    """Give the tensors ai-edge-quantizer adds after QUANTIZE/DEQUANTIZE ops the shape signature
    of their input: it copies only the static shape, so a re-quantized model output loses its
    dynamic batch (``shape_signature`` [1, 10] instead of [-1, 10]) although it still resizes."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(data))
    elementwise = {schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE}
    changed = False
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = fb.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
            if code not in elementwise:
                continue
            src, dst = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.outputs[0]]
            signature = list(src.shapeSignature) if src.shapeSignature is not None else []
            if (-1 in signature and (dst.shapeSignature is None or len(dst.shapeSignature) == 0)
                    and list(dst.shape) == list(src.shape)):
                dst.shapeSignature = signature
                changed = True
    return bytes(fb.convert_object_to_bytearray(model)) if changed else data


def _signature_input(path: Path) -> tuple[str, str]:
    signatures = open_interpreter(path).get_signature_list()
    if not signatures:
        raise ConversionError(VARIANT, f"{path} has no signature to calibrate")
    key = sorted(signatures)[0]
    inputs = signatures[key]["inputs"]
    if len(inputs) != 1:
        raise ConversionError(VARIANT, f"signature {key!r} has {len(inputs)} inputs; "
                                       "qskew calibrates single-input classifiers")
    return key, inputs[0]


def _aeq_name(op_name: str) -> str:
    return WEIGHT_OPS.get(op_name, op_name)


def _quantizable_op_names() -> set[str]:
    from ai_edge_quantizer import qtyping

    names = {member.value for member in qtyping.TFLOperationName} - NOT_LAYERS
    return names | {tflite for tflite, aeq in WEIGHT_OPS.items() if aeq in names}
