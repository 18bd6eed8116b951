"""Run a .tflite on the host's LiteRT reference kernels: the reference of a model given as a .tflite.

A model under test that is already a .tflite file has no Keras model to compute FP32 logits with;
its reference is its own run on the plainest kernels LiteRT has (``OpResolverType.BUILTIN_REF``),
next to which the device jobs measure delegate and device skew.

>>> reference_kernel_outputs(Path("model.tflite"), x).shape  # doctest: +SKIP
(719, 10)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import ArtifactError
from harness.quantize.inspect import custom_ops, open_interpreter, runtime_version

BATCH_SIZE = 64  # reference kernels are plain loops: batches only save the per-call overhead


def runtime_label() -> str:
    """What computed the outputs, e.g. ``ai-edge-litert 1.2.0 reference kernels``."""
    return f"ai-edge-litert {runtime_version()} reference kernels"


def reference_kernel_outputs(path: Path, x: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The float outputs [N, K] of the .tflite at ``path`` on the float inputs ``x`` [N, ...], run
    with LiteRT's reference kernels (``BUILTIN_REF``: the plainest implementation of every op, no
    delegate). Integer inputs are quantized and integer outputs dequantized with the tensors' own
    scale and zero point, as the device runner does; ArtifactError if the model cannot run."""
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = open_interpreter(path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    tin, tout = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    signature = tuple(int(d) for d in tin.get("shape_signature", tin["shape"]))
    step = batch_size if signature[0] == -1 else signature[0]
    outs = []
    try:
        interpreter.resize_tensor_input(tin["index"], [step, *signature[1:]])
        interpreter.allocate_tensors()
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
            interpreter.set_tensor(tin["index"], _quantized(padded, tin))
            interpreter.invoke()
            outs.append(_dequantized(interpreter.get_tensor(tout["index"]), tout)[:len(chunk)])
    except (ValueError, RuntimeError) as exc:
        custom = custom_ops(path)
        named = f"it has custom op(s) {', '.join(custom)}, which LiteRT has no kernel for; " if custom else ""
        raise ArtifactError(f"{path} failed on the reference kernels: {named}{' '.join(str(exc).split())}") from exc
    values = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    return values.reshape(len(x), -1).astype(np.float32)


def _quantized(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale or 1.0)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantized(raw: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return raw.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((raw.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
