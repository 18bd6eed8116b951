"""Where in the network a variant departs from FP32: per layer and per group, RMSE and SNR (dB).

The variant's ``.tflite`` runs on the host (ai_edge_litert, builtin kernels without a default
delegate, ``experimental_preserve_all_tensors=True``) and every intermediate tensor is read back,
dequantized with its own scale and zero point (int8/int16/uint8) or taken as is (float). Each is
compared with the output of the matching layer of the FP32 Keras model on the same samples::

    rmse   = sqrt(mean over the group's samples and the tensor's elements of (q - f)^2)
    snr_db = 10 log10(sum f^2 / sum (q - f)^2)       (inf when the two are identical)

The error is cumulative: a layer's output carries what earlier layers lost as well as its own.

Matching a TFLite tensor to a Keras layer (in op order, QUANTIZE/DEQUANTIZE ops skipped): the
tensor's name, split at ``;`` and ``/``, must contain the layer's name (or ``name_<digits>``, the
suffix TensorFlow's name scopes add) and the per-sample shapes must agree. When several layers
qualify (a conv and the ReLU the converter fused into it), the one whose FP32 output is closest
to the tensor on the first batch wins. The model's output tensor is matched to the layer that
produces the model's output. A layer that more than one tensor matches keeps the last one in op
order (the one the next layer consumes). Layers with no tensor (fused away) are not reported.

    >>> errors = layer_errors(keras_model, Path("int8.tflite"), x_float, groups)  # doctest: +SKIP
    >>> errors.rows[0]  # LayerError(layer='conv1', group='faint', n=180, rmse=..., snr_db=...)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ArtifactError
from harness.quantize.host_run import quantize_input

BATCH_SIZE = 64           # samples per interpreter call: every intermediate tensor is kept in memory
SKIPPED_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK", "DELEGATE"})
VALUE_DTYPES = frozenset({"float32", "int8", "uint8", "int16"})  # tensors that carry activations


@dataclass(frozen=True)
class TensorMatch:
    """A TFLite tensor matched to a Keras layer."""

    layer: str
    order: int               # the layer's position in the Keras model
    op_index: int
    op_name: str
    tensor: str
    tensor_index: int
    dtype: str


@dataclass(frozen=True)
class LayerError:
    """One row of layers.csv (without the variant)."""

    layer: str
    group: str
    n: int
    rmse: float
    snr_db: float
    order: int
    op: str
    dtype: str
    tensor: str


@dataclass(frozen=True)
class LayerErrors:
    matches: tuple[TensorMatch, ...]
    rows: tuple[LayerError, ...]


def layer_errors(model: Any, path: Path, x: np.ndarray, groups: np.ndarray,
                 batch_size: int = BATCH_SIZE) -> LayerErrors:
    """Per layer and group, the error of the variant at ``path`` against ``model`` on float inputs ``x``."""
    import keras

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    probe = keras.Model(model.inputs[0], [layer.output for layer in layers])
    runner = _Runner(path, batch_size, x.shape[1:])
    groups = np.asarray(groups).astype(str)
    names = sorted(set(groups.tolist()))
    matches: tuple[TensorMatch, ...] | None = None
    err = sig = None
    for start in range(0, len(x), runner.batch):
        xb = x[start:start + runner.batch]
        ref = [np.asarray(o, np.float64) for o in _as_list(probe(xb, training=False))]
        values = runner.run(xb)
        if matches is None:
            matches = _match(model, layers, ref, values, runner)
            err = np.zeros((len(matches), len(names)))
            sig = np.zeros((len(matches), len(names)))
        g = np.searchsorted(names, groups[start:start + len(xb)])
        for i, m in enumerate(matches):
            q, f = values[m.tensor_index], ref[m.order]
            axes = tuple(range(1, f.ndim))
            np.add.at(err[i], g, np.sum((q - f) ** 2, axis=axes))
            np.add.at(sig[i], g, np.sum(f ** 2, axis=axes))
    counts = {name: int(np.sum(groups == name)) for name in names}
    rows = []
    for i, m in enumerate(matches or ()):
        size = int(np.prod(probe.outputs[m.order].shape[1:]))
        for j, name in enumerate(names):
            rmse = math.sqrt(err[i, j] / (counts[name] * size))
            rows.append(LayerError(layer=m.layer, group=name, n=counts[name], rmse=rmse,
                                   snr_db=snr_db(sig[i, j], err[i, j]),
                                   order=m.order, op=m.op_name, dtype=m.dtype, tensor=m.tensor))
    return LayerErrors(matches=matches or (), rows=tuple(rows))


class _Runner:
    """A preserve-all-tensors interpreter at a fixed batch; returns every value tensor, dequantized."""

    def __init__(self, path: Path, batch_size: int, sample_shape: tuple):
        from ai_edge_litert.interpreter import OpResolverType

        from harness.quantize.inspect import open_interpreter

        self.path = Path(path)
        self.interpreter = open_interpreter(
            path, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.input = self.interpreter.get_input_details()[0]
        self.output_index = int(self.interpreter.get_output_details()[0]["index"])
        signature = tuple(int(d) for d in self.input.get("shape_signature", self.input["shape"]))
        self.batch = batch_size if signature[0] == -1 else int(self.input["shape"][0])
        try:
            if signature[0] == -1:
                self.interpreter.resize_tensor_input(self.input["index"], [self.batch, *sample_shape])
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{path} failed to prepare at batch {self.batch}: {exc}") from exc
        self.ops = [op for op in self.interpreter._get_ops_details() if op["op_name"] not in SKIPPED_OPS]
        self.details = {d["index"]: d for d in self.interpreter.get_tensor_details()}

    def run(self, xb: np.ndarray) -> dict[int, np.ndarray]:
        """Tensor index -> dequantized float64 values [len(xb), ...] of every activation tensor."""
        n = len(xb)
        padded = np.zeros((self.batch, *xb.shape[1:]), np.float32)
        padded[:n] = xb
        try:
            self.interpreter.set_tensor(self.input["index"], quantize_input(padded, self.input))
            self.interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{self.path} failed to run on the host: {exc}") from exc
        out = {}
        for index in self._value_tensors():
            detail = self.details[index]
            values = self.interpreter.get_tensor(index)
            if values.ndim >= 1 and values.shape[0] == self.batch:
                out[index] = _dequantize(values, detail)[:n]
        return out

    def _value_tensors(self) -> list[int]:
        indices = [int(t) for op in self.ops for t in op["outputs"]] + [self.output_index]
        return [i for i in dict.fromkeys(indices) if np.dtype(self.details[i]["dtype"]).name in VALUE_DTYPES]

    def op_of(self, index: int) -> dict | None:
        for op in self.ops:
            if index in [int(t) for t in op["outputs"]]:
                return op
        return None


def _match(model: Any, layers: list, ref: list[np.ndarray], values: dict[int, np.ndarray],
           runner: _Runner) -> tuple[TensorMatch, ...]:
    """Tensor -> layer assignment (see the module docstring), one tensor per layer, in layer order."""
    output_layer = next((layer.name for layer in layers if layer.output is model.outputs[0]), layers[-1].name)
    chosen: dict[int, TensorMatch] = {}
    for index, q in values.items():
        name = str(runner.details[index]["name"])
        if index == runner.output_index:
            candidates = [i for i, layer in enumerate(layers) if layer.name == output_layer]
        else:
            candidates = [i for i, layer in enumerate(layers) if _name_matches(layer.name, name)]
        candidates = [i for i in candidates if ref[i].shape == q.shape]
        if not candidates:
            continue
        best = min(candidates, key=lambda i: _relative_error(q, ref[i]))
        op = runner.op_of(index)
        chosen[best] = TensorMatch(layer=layers[best].name, order=best,
                                   op_index=int(op["index"]) if op else -1,
                                   op_name=str(op["op_name"]) if op else "OUTPUT", tensor=name,
                                   tensor_index=index, dtype=np.dtype(runner.details[index]["dtype"]).name)
    if not chosen:
        raise ArtifactError(f"{runner.path}: no tensor matches a layer of model {model.name!r} "
                            "(names and shapes differ)")
    return tuple(chosen[i] for i in sorted(chosen))


def snr_db(signal_energy: float, error_energy: float) -> float:
    """10 log10(signal / error): inf for no error, -inf for an error on a zero signal."""
    if error_energy == 0:
        return math.inf
    if signal_energy == 0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / error_energy)


def _name_matches(layer: str, tensor: str) -> bool:
    pattern = re.compile(re.escape(layer) + r"(_\d+)?")
    return any(pattern.fullmatch(part) for part in re.split(r"[;/]", tensor))


def _relative_error(q: np.ndarray, f: np.ndarray) -> float:
    return float(np.sum((q - f) ** 2) / max(float(np.sum(f ** 2)), 1e-30))


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if values.dtype.kind == "f":
        return values.astype(np.float64)
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), np.float64)
    zero_points = np.asarray(qp.get("zero_points", []), np.float64)
    if scales.size == 0:
        return values.astype(np.float64)
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[int(qp.get("quantized_dimension", 0))] = -1
    return (values.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)


def _as_list(outputs: Any) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
