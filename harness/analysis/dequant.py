"""A variant's weights, read from its ``.tflite`` and dequantized, put back into a copy of the Keras model.

What is put back: the kernel and bias of every Dense, Conv1D, Conv2D and DepthwiseConv2D layer,
read from the matching FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D op of the .tflite file and
dequantized with the tensor's own parameters, per channel where the file has several scales
(``real = (q - zero_point) * scale`` along ``quantized_dimension``; float16 constants behind a
DEQUANTIZE op are cast). Layouts differ: TFLite conv kernels are OHWI where Keras has HWIO, dense
kernels are [out, in] where Keras has [in, out], a depthwise kernel is [1, H, W, C*M] where Keras
has [H, W, C, M]. A BatchNormalization that follows a layer is folded into the TFLite kernel; it is
unfolded again (``W = W_folded / s``, ``s = gamma / sqrt(var + eps)``) so the model keeps FP32's
parametrisation and the BN layer its FP32 values (a conv without bias then loses only the int32
bias's quantization, orders of magnitude below the kernel's).

Matching is by layer kind, converted shape and closeness: each Keras kernel layer takes the
unused TFLite op of its kind whose converted kernel has the same shape and the smallest error
relative to the FP32 kernel, and that error must stay within one quantization step (per channel;
float16: 2^-10 relative), so a wrong assignment cannot pass silently. A model whose kernel layers
do not all match raises ArtifactError naming the file and the layers left over. A Rescaling or
Normalization right before a kernel layer may have been folded into its kernel and bias by the
converter (``W * s``, ``b + sum W * o``); that folding is undone the same way when it matches better.

What this model is NOT: activations are not quantized (no fake-quant on layer outputs, inputs or
logits). It isolates the weights' share of the damage; the on-device logits include both.

    >>> dq = dequantized_model(keras_model, Path("int8.tflite"))  # doctest: +SKIP
    >>> dq.model.predict(x), dq.layers  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ArtifactError

KERAS_KINDS = {"Dense": "FULLY_CONNECTED", "Conv2D": "CONV_2D", "Conv1D": "CONV_2D",
               "DepthwiseConv2D": "DEPTHWISE_CONV_2D"}  # Keras class -> TFLite op holding its kernel
FLOAT16_STEP = 2.0 ** -10   # float16 has a 10-bit mantissa: relative rounding step
FLOAT16_TINY = 2.0 ** -24   # float16's subnormal spacing: the step of values near zero
FLOAT32_STEP = 1e-6         # float32 kernels differ only by folding arithmetic
FLOAT32_TINY = 1e-30        # keeps a float32 step of an exact zero above zero
SLACK = 1e-6                # absolute slack relative to max|W| for the closeness check (rounding)
NORMALIZATION_EPSILON = 1e-7  # keras.layers.Normalization divides by max(sqrt(var), keras's epsilon)


@dataclass(frozen=True, eq=False)
class TfliteWeight:
    """One weight op of a .tflite file: its kernel and bias, dequantized to float64, TFLite layout."""

    op_index: int
    op_name: str
    tensor: str               # name of the kernel tensor
    dtype: str                # storage dtype of the kernel ("int8", "float16", "float32")
    kernel: np.ndarray
    step: np.ndarray          # per-element quantization step of the kernel (same shape)
    bias: np.ndarray | None


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """Dequantized weights for one Keras layer, in Keras layout (bias None: keep FP32's)."""

    layer: str
    op_index: int
    dtype: str
    kernel: np.ndarray
    bias: np.ndarray | None
    max_error_steps: float    # max |W_q - W_fp32| / step over the kernel


@dataclass(frozen=True, eq=False)
class DequantizedModel:
    """A copy of the Keras model carrying a variant's dequantized weights."""

    model: Any
    layers: tuple[LayerWeights, ...]
    weight_delta_norm: float  # ||theta_Q - theta_R||_2 over the trainable weights


def read_weights(path: Path) -> tuple[TfliteWeight, ...]:
    """Every FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D op's kernel and bias, in execution order."""
    from ai_edge_litert.interpreter import OpResolverType

    from harness.quantize.inspect import open_interpreter

    # No default delegate: XNNPACK adds DELEGATE nodes that claim the DEQUANTIZE ops' outputs.
    interpreter = open_interpreter(path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path} failed to allocate tensors: {exc}") from exc
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    producer = {int(o): op for op in ops if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    out = []
    for op in ops:
        if op["op_name"] not in KERAS_KINDS.values() or len(op["inputs"]) < 2:
            continue
        kernel_idx = _constant_source(int(op["inputs"][1]), producer)
        bias_idx = int(op["inputs"][2]) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
        kernel, step = _dequantize(interpreter, details[kernel_idx], path)
        bias = None
        if bias_idx is not None:
            bias, _ = _dequantize(interpreter, details[_constant_source(bias_idx, producer)], path)
        out.append(TfliteWeight(op_index=int(op["index"]), op_name=str(op["op_name"]),
                                tensor=str(details[kernel_idx]["name"]),
                                dtype=np.dtype(details[kernel_idx]["dtype"]).name,
                                kernel=kernel, step=step, bias=bias))
    return tuple(out)


def dequantized_model(model: Any, path: Path) -> DequantizedModel:
    """A clone of ``model`` with every kernel layer's weights taken from the .tflite at ``path``."""
    import keras

    mapped = match_weights(model, read_weights(path), path)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    by_name = {layer.name: layer for layer in _flat_layers(clone)}
    for lw in mapped:
        layer = by_name[lw.layer]
        layer.kernel.assign(lw.kernel.astype(layer.kernel.dtype))
        if lw.bias is not None and getattr(layer, "bias", None) is not None:
            layer.bias.assign(lw.bias.astype(layer.bias.dtype))
    delta = [np.asarray(a, np.float64) - np.asarray(b, np.float64)
             for a, b in zip(clone.trainable_weights, model.trainable_weights)]
    norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in delta)))
    return DequantizedModel(model=clone, layers=mapped, weight_delta_norm=norm)


def match_weights(model: Any, weights: tuple[TfliteWeight, ...], path: Path) -> tuple[LayerWeights, ...]:
    """Assign each Keras kernel layer its TFLite weight op (kind, shape, closeness); see the docstring."""
    layers = [layer for layer in _flat_layers(model) if type(layer).__name__ in KERAS_KINDS]
    if not layers:
        raise ArtifactError(f"model {model.name!r} has no Dense/Conv layer whose weights {path} could carry")
    free = list(weights)
    mapped, missing = [], []
    for layer in layers:
        best = _best_candidate(layer, free)
        if best is None or best[1].max_error_steps > 1.0:
            missing.append(layer.name if best is None else
                           f"{layer.name} (closest op {best[0].op_index} is {best[1].max_error_steps:.1f} steps away)")
            continue
        free.remove(best[0])
        mapped.append(best[1])
    if missing:
        raise ArtifactError(f"{path}: cannot map weights onto Keras layer(s) {', '.join(missing)} of model "
                            f"{model.name!r}; {len(free)} weight op(s) left unmatched")
    return tuple(mapped)


def _best_candidate(layer: Any, free: list[TfliteWeight]) -> tuple[TfliteWeight, LayerWeights] | None:
    fp32 = np.asarray(layer.kernel.numpy(), np.float64)
    best = None
    for w in free:
        if w.op_name != KERAS_KINDS[type(layer).__name__]:
            continue
        kernel, step = _to_keras(layer, w.kernel), _to_keras(layer, w.step)
        if kernel is None or kernel.shape != fp32.shape:
            continue
        for k, b, st in _readings(layer, kernel, w.bias, step):
            tolerance = st + SLACK * max(float(np.abs(fp32).max()), 1e-12)
            error = float(np.max(np.abs(k - fp32) / tolerance))
            if best is None or error < best[1].max_error_steps:
                best = (w, LayerWeights(layer=layer.name, op_index=w.op_index, dtype=w.dtype, kernel=k,
                                        bias=b, max_error_steps=error))
    return best


def _readings(layer: Any, kernel: np.ndarray, bias: np.ndarray | None, step: np.ndarray):
    """The ways a TFLite kernel can stand for the layer's: as it is (a following BN unfolded), and,
    when the layer's input comes straight from a Rescaling/Normalization the converter may have
    folded into it, with that input scaling unfolded too."""
    kernel, bias, step = _unfold(layer, kernel, bias, step)
    yield kernel, bias, step
    affine = _preceding_affine(layer)
    if affine is not None and kernel.ndim in (2, 4):
        yield _unfold_input_affine(kernel, bias, step, *affine)


def _preceding_affine(layer: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, offset) per input channel of a Rescaling or Normalization feeding ``layer``
    directly (input = x * scale + offset); None if there is none, or it is not per channel."""
    # a loaded Sequential model calls its layers more than once (one node per call): same producer
    producers = {id(p.operation): p.operation for node in getattr(layer, "_inbound_nodes", [])
                 for p in node.parent_nodes}
    if len(producers) != 1:
        return None
    producer = next(iter(producers.values()))
    kind = type(producer).__name__
    if kind == "Rescaling":
        scale, offset = np.asarray(producer.scale, np.float64), np.asarray(producer.offset, np.float64)
    elif kind == "Normalization" and getattr(producer, "mean", None) is not None:
        std = np.maximum(np.sqrt(np.asarray(producer.variance, np.float64)), NORMALIZATION_EPSILON)
        scale, offset = 1.0 / std, -np.asarray(producer.mean, np.float64) / std
    else:
        return None
    channels = int(layer.kernel.shape[-2])
    scale, offset = np.broadcast_arrays(scale.reshape(-1), offset.reshape(-1))
    if scale.size == 1:
        return np.full(channels, scale[0]), np.full(channels, offset[0])
    return (scale, offset) if scale.size == channels else None


def _unfold_input_affine(kernel: np.ndarray, bias: np.ndarray | None, step: np.ndarray,
                         scale: np.ndarray, offset: np.ndarray):
    """Undo ``conv(x * s + o, W) + b == conv(x, W * s) + (b + sum W * o)``: the converter's
    folding of an input scaling into the next kernel (Keras layout, input channels on axis -2)."""
    shape = [1] * kernel.ndim
    shape[-2] = -1
    kernel = kernel / scale.reshape(shape)
    step = step / np.abs(scale).reshape(shape)
    if bias is not None:
        bias = bias - np.tensordot(kernel, offset, axes=([kernel.ndim - 2], [0])).reshape(-1, kernel.shape[-1]).sum(0)
    return kernel, bias, step


def _to_keras(layer: Any, array: np.ndarray) -> np.ndarray | None:
    """A TFLite-layout kernel in the layer's Keras layout; None when the sizes cannot fit."""
    kind = type(layer).__name__
    shape = tuple(int(d) for d in layer.kernel.shape)
    if array.size != int(np.prod(shape)):
        return None
    if kind == "Dense" and array.ndim == 2:
        return array.T
    if kind in ("Conv2D", "Conv1D") and array.ndim == 4:
        return np.transpose(array, (1, 2, 3, 0)).reshape(shape)  # OHWI -> HWIO (Conv1D: H == 1 dropped)
    if kind == "DepthwiseConv2D" and array.ndim == 4:
        return array.reshape(shape)                              # [1, H, W, C*M] -> [H, W, C, M]
    return None


def _unfold(layer: Any, kernel: np.ndarray, bias: np.ndarray | None,
            step: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Undo the converter's folding of a following BatchNormalization (identity when there is none)."""
    bn = _following_batch_norm(layer)
    has_bias = getattr(layer, "bias", None) is not None
    if bn is None:
        return kernel, bias if has_bias else None, step
    s, beta, mean = _bn_factors(bn)
    s = s.reshape(kernel.shape[-2:]) if s.size != kernel.shape[-1] else s  # depthwise: (C, M)
    kernel, step = kernel / s, step / np.abs(s)
    if not has_bias or bias is None:
        return kernel, None, step
    return kernel, (bias - beta) / s.reshape(-1) + mean, step


def _following_batch_norm(layer: Any) -> Any | None:
    nodes = getattr(layer, "_outbound_nodes", [])
    if len(nodes) != 1:
        return None
    consumer = nodes[0].operation
    if type(consumer).__name__ != "BatchNormalization":
        return None
    if consumer.axis not in (-1, len(layer.output.shape) - 1):
        return None
    return consumer


def _bn_factors(bn: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s = gamma / sqrt(var + eps), beta, moving mean) of a BatchNormalization layer."""
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones_like(var)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros_like(var)
    return gamma / np.sqrt(var + bn.epsilon), beta, mean


def _constant_source(index: int, producer: dict) -> int:
    """The constant behind ``index``: follows a DEQUANTIZE op (float16 and some int8 weights)."""
    op = producer.get(index)
    while op is not None and op["op_name"] == "DEQUANTIZE":
        index = int(op["inputs"][0])
        op = producer.get(index)
    return index


def _dequantize(interpreter: Any, detail: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, per-element step) of a constant tensor."""
    try:
        values = np.asarray(interpreter.get_tensor(detail["index"]))
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: cannot read tensor {detail['name']!r}: {exc}") from exc
    if values.dtype == np.float16:
        out = values.astype(np.float64)
        return out, np.maximum(np.abs(out) * FLOAT16_STEP, FLOAT16_TINY)
    if values.dtype.kind == "f":
        out = values.astype(np.float64)
        return out, np.maximum(np.abs(out) * FLOAT32_STEP, FLOAT32_TINY)
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), np.float64)
    if scales.size == 0:
        raise ArtifactError(f"{path}: tensor {detail['name']!r} is {values.dtype} without quantization "
                            "parameters; cannot dequantize it")
    zero_points = np.asarray(qp.get("zero_points", np.zeros_like(scales)), np.float64)
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[int(qp.get("quantized_dimension", 0))] = -1
    scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)
    out = (values.astype(np.float64) - zero_points) * scales
    return out, np.broadcast_to(scales, values.shape).copy()


def _flat_layers(model: Any) -> list[Any]:
    """Every layer of ``model``, nested models' layers included, in build order."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return list(model.layers)
    return [layer for layer in flatten(include_self=False, recursive=True)
            if not hasattr(layer, "layers")]
