"""Read a .tflite file with the host runtime (ai_edge_litert): I/O tensors, ops, dtypes, prepare.

This is what ``qskew inspect model.tflite`` prints and what the quantize stage uses to describe and
check each variant it builds. Every failure to read a file becomes one ArtifactError naming it:

    >>> info = inspect_model(Path("model.tflite"))
    >>> print(format_model_info(info))          # a text table of I/O and op counts
    >>> read_io(Path("model.tflite"))           # (inputs, outputs) as TensorIO tuples
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ArtifactError
from harness.records import TensorIO

RUNTIME_NAME = "ai_edge_litert"  # the host runtime every check here uses


@dataclass(frozen=True)
class OpInfo:
    """One operator in execution order. ``scope`` is ai-edge-quantizer's name for it: the op's
    output tensor names joined by ";" with a trailing ";" (what mixed_layers_regex searches)."""

    index: int
    op_name: str
    outputs: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    input_dtypes: tuple[str, ...]

    @property
    def scope(self) -> str:
        return ";".join(self.outputs) + ";" if self.outputs else ""


@dataclass(frozen=True)
class ModelInfo:
    """What a .tflite file contains: I/O, op counts by (op, first output dtype), tensor dtypes."""

    path: Path
    sha256: str
    size_bytes: int
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    op_counts: tuple[tuple[str, str, int], ...]
    tensor_dtypes: tuple[tuple[str, int], ...]
    custom_ops: tuple[str, ...] = ()   # custom codes of the ops that are not LiteRT builtins

    def to_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "size_bytes": self.size_bytes,
                "custom_ops": list(self.custom_ops),
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs],
                "op_counts": [{"op": op, "dtype": dt, "count": n} for op, dt, n in self.op_counts],
                "tensor_dtypes": {dt: n for dt, n in self.tensor_dtypes}}


def open_interpreter(path: Path, **kwargs: Any):
    """An ai_edge_litert Interpreter on ``path``; ArtifactError naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path} is empty (0 bytes), not a TFLite model")
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_path=str(path), **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path} is not a valid TFLite flatbuffer (truncated?): "
                            f"{_one_line(exc)}") from exc


def read_io(path: Path) -> tuple[tuple[TensorIO, ...], tuple[TensorIO, ...]]:
    """The model's (inputs, outputs) as the runtime reports them, before any resize."""
    interpreter = open_interpreter(path)
    return (tuple(_tensor_io(d) for d in interpreter.get_input_details()),
            tuple(_tensor_io(d) for d in interpreter.get_output_details()))


def list_ops(path: Path) -> tuple[OpInfo, ...]:
    """The model's operators in execution order (first subgraph)."""
    return _ops_of(open_interpreter(path))


def inspect_model(path: Path) -> ModelInfo:
    """Everything ``qskew inspect`` shows about one .tflite file."""
    path = Path(path)
    interpreter = open_interpreter(path)
    data = path.read_bytes()
    counts: dict[tuple[str, str], int] = {}
    for op in _ops_of(interpreter):
        key = (op.op_name, op.output_dtypes[0] if op.output_dtypes else "")
        counts[key] = counts.get(key, 0) + 1
    dtypes: dict[str, int] = {}
    for detail in interpreter.get_tensor_details():
        name = np.dtype(detail["dtype"]).name
        dtypes[name] = dtypes.get(name, 0) + 1
    return ModelInfo(
        path=path, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
        inputs=tuple(_tensor_io(d) for d in interpreter.get_input_details()),
        outputs=tuple(_tensor_io(d) for d in interpreter.get_output_details()),
        op_counts=tuple(sorted((op, dt, n) for (op, dt), n in counts.items())),
        tensor_dtypes=tuple(sorted(dtypes.items())), custom_ops=custom_ops(path))


def custom_ops(path: Path) -> tuple[str, ...]:
    """The custom codes of the model's custom ops (ops outside LiteRT's builtins, which a runtime
    only runs with a kernel registered for them), read from the flatbuffer, sorted; () if none."""
    from ai_edge_litert.tools import flatbuffer_utils

    try:
        model = flatbuffer_utils.read_model(str(path))
    except Exception as exc:  # flatbuffers raises struct.error, IndexError... on junk
        raise ArtifactError(f"{path} is not a readable TFLite flatbuffer: {_one_line(exc)}") from exc
    used = {op.opcodeIndex for graph in model.subgraphs for op in (graph.operators or ())}
    codes = (model.operatorCodes[i].customCode for i in used)
    return tuple(sorted({c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in codes if c}))


def check_prepares(path: Path, batch_size: int) -> None:
    """Resize dynamic-batch inputs to ``batch_size`` and allocate tensors on the host runtime.

    Raises ArtifactError with the runtime's message when a kernel refuses to prepare (e.g. a 16x8
    CONV_2D whose activation range overflows: "no_integer_overflow_from_quantization").
    """
    interpreter = open_interpreter(path)
    try:
        for detail in interpreter.get_input_details():
            signature = tuple(int(d) for d in detail["shape_signature"])
            if signature and signature[0] == -1:
                interpreter.resize_tensor_input(detail["index"], [batch_size, *signature[1:]])
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        custom = custom_ops(path)
        named = (f"it has custom op(s) {', '.join(custom)}, which {RUNTIME_NAME} has no kernel for; "
                 if custom else "")
        raise ArtifactError(f"{path} failed to prepare on {RUNTIME_NAME} {runtime_version()} "
                            f"(batch {batch_size}): {named}{_one_line(exc)}") from exc


def runtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


def format_model_info(info: ModelInfo) -> str:
    """A readable text report: file, I/O tensors table, op counts table, tensor dtypes."""
    lines = [f"{info.path}  ({info.size_bytes:,} bytes, sha256 {info.sha256[:16]}...)", ""]
    io_rows = [(kind, t.name, t.dtype, _dims(t.shape_signature or t.shape),
                f"{t.scale:.6g}" if t.quantized else "-", str(t.zero_point) if t.quantized else "-")
               for kind, tensors in (("input", info.inputs), ("output", info.outputs))
               for t in tensors]
    lines += _table(("io", "name", "dtype", "shape", "scale", "zero_point"), io_rows)
    lines.append("")
    lines += _table(("op", "output dtype", "count"),
                    [(op, dt, str(n)) for op, dt, n in info.op_counts])
    lines.append("")
    lines.append("tensors by dtype: " + ", ".join(f"{dt} {n}" for dt, n in info.tensor_dtypes))
    if info.custom_ops:
        lines.append(f"custom ops: {', '.join(info.custom_ops)} (not LiteRT builtins: a runtime needs a kernel "
                     "registered for each, or the model fails to prepare)")
    return "\n".join(lines)


def _ops_of(interpreter) -> tuple[OpInfo, ...]:
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def names(indices) -> tuple[str, ...]:
        return tuple(tensors[i]["name"] for i in indices if i >= 0 and i in tensors)

    def dtypes(indices) -> tuple[str, ...]:
        return tuple(np.dtype(tensors[i]["dtype"]).name for i in indices
                     if i >= 0 and i in tensors)

    return tuple(OpInfo(index=int(op["index"]), op_name=str(op["op_name"]),
                        outputs=names(op["outputs"]), output_dtypes=dtypes(op["outputs"]),
                        input_dtypes=dtypes(op["inputs"]))
                 for op in interpreter._get_ops_details())


def _tensor_io(detail: dict) -> TensorIO:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorIO(name=str(detail["name"]), index=int(detail["index"]),
                    dtype=np.dtype(detail["dtype"]).name,
                    shape=tuple(int(d) for d in detail["shape"]),
                    shape_signature=tuple(int(d) for d in detail.get("shape_signature",
                                                                     detail["shape"])),
                    scale=float(scale), zero_point=int(zero_point))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + \
        [fmt.format(*row) for row in rows]


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("?" if d == -1 else str(d) for d in shape) + "]"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())

