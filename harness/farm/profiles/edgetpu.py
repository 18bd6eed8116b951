"""The Edge TPU profile's rules: which .tflite models an Edge TPU accepts, read from the file itself.

Everything is decided from the .tflite flatbuffer (tensor dtypes, shapes and shape signatures,
operators), never from a variant's name. :func:`refusal` says why a model cannot run on an Edge
TPU, or None. The Edge TPU runs full-integer models -- int8/uint8 activations, inputs and outputs,
int32 biases -- whose sizes are all fixed when the model is compiled (coral.ai, "Model
requirements"); qskew runs it at batch 1. So int16x8 and mixed (16-bit activations),
fp32/dynamic/float16 (float computation) and a dynamic-batch int8 are refused, each with its
reason. The compiled model the TPU runs comes from :mod:`harness.farm.profiles.edgetpu_compiler`.

>>> refusal(Path("int16x8.tflite"))                                  # doctest: +SKIP
'16-bit activations (int16 outputs of CONV_2D x2, ...); the Edge TPU runs 8-bit integer models only'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import ArtifactError
from harness.records import TensorIO

CUSTOM_OP = "edgetpu-custom-op"            # the op a compiled model runs on the Edge TPU
EIGHT_BIT = {"int8", "uint8"}
ALLOWED_DTYPES = EIGHT_BIT | {"int32"}       # int32: biases (and the shape of a RESHAPE)
FLOAT_DTYPES = {"float32", "float16", "float64", "bfloat16"}
REQUANTIZE_OPS = {"QUANTIZE", "DEQUANTIZE"}  # they convert between dtypes; they compute nothing
FIX_BATCH_HINT = "convert with `[quantize] fixed_batch = 1`"


# ---------------------------------------------------------------- the model, from its flatbuffer

@dataclass(frozen=True)
class TensorFacts:
    name: str
    dtype: str                         # numpy-style name: "int8", "float32", ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]   # -1 marks a dynamic dimension
    scale: float                       # 0.0 when not quantized
    zero_point: int


@dataclass(frozen=True)
class OpFacts:
    op: str                            # builtin name ("CONV_2D") or the custom code
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class GraphFacts:
    """The main subgraph of a .tflite file, as the Edge TPU rules need it."""

    tensors: tuple[TensorFacts, ...]
    ops: tuple[OpFacts, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def output_dtypes(self, op: OpFacts) -> set[str]:
        return {self.tensors[i].dtype for i in op.outputs if i >= 0}

    def io(self) -> tuple[tuple[TensorIO, ...], tuple[TensorIO, ...]]:
        return tuple(self._io(i) for i in self.inputs), tuple(self._io(i) for i in self.outputs)

    def _io(self, index: int) -> TensorIO:
        t = self.tensors[index]
        return TensorIO(name=t.name, index=index, dtype=t.dtype, shape=t.shape,
                        shape_signature=t.shape_signature, scale=t.scale, zero_point=t.zero_point)


def read_graph(path: Path) -> GraphFacts:
    """Tensors and operators of the first subgraph of ``path`` (ArtifactError if unreadable).

    Read from the flatbuffer rather than through an interpreter, so a compiled model, whose
    ``edgetpu-custom-op`` the host runtime cannot resolve, reads as well as any other.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fb

    path = Path(path)
    try:
        model = fb.read_model(path)
        graph = model.subgraphs[0]
    except Exception as exc:  # flatbuffers raises struct.error, IndexError, TypeError... on junk
        raise ArtifactError(f"{path} is not a readable TFLite flatbuffer: {exc}") from exc
    tensors = tuple(_tensor_facts(t, fb) for t in graph.tensors)
    ops = tuple(OpFacts(op=_op_name(model, op.opcodeIndex, fb),
                        outputs=tuple(int(i) for i in (op.outputs if op.outputs is not None else ())))
                for op in graph.operators)
    return GraphFacts(tensors=tensors, ops=ops, inputs=tuple(int(i) for i in graph.inputs),
                      outputs=tuple(int(i) for i in graph.outputs))


def _tensor_facts(t, fb) -> TensorFacts:
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    signature = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None \
        and len(t.shapeSignature) else shape
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "")
    return TensorFacts(name=name, dtype=fb.type_to_name(t.type).lower(), shape=shape,
                       shape_signature=signature, scale=scale, zero_point=zero)


def _op_name(model, opcode_index: int, fb) -> str:
    code = model.operatorCodes[opcode_index]
    custom = code.customCode
    if custom:
        return custom.decode("utf-8", "replace") if isinstance(custom, bytes) else str(custom)
    return fb.opcode_to_name(model, opcode_index) or "UNKNOWN"


# ---------------------------------------------------------------- what the Edge TPU accepts

def refusal(path: Path) -> str | None:
    """Why the Edge TPU cannot run the model at ``path`` at batch 1, or None if it can."""
    graph = read_graph(path)
    for rule in (_sixteen_bit, _float, _other_dtypes, _dynamic_sizes, _batch):
        why = rule(graph)
        if why:
            return why
    return None


def _sixteen_bit(g: GraphFacts) -> str | None:
    wide = [op.op for op in g.ops if "int16" in g.output_dtypes(op)]
    if not wide:
        return None
    narrow = [op.op for op in g.ops
              if op.op not in REQUANTIZE_OPS and g.output_dtypes(op) & EIGHT_BIT]
    if narrow:
        computing = [op for op in wide if op not in REQUANTIZE_OPS]
        return (f"mixed 8/16-bit model: {_summary(computing or wide)} compute with 16-bit "
                f"activations among {len(narrow)} 8-bit op(s); the Edge TPU runs 8-bit integer "
                "models only")
    return (f"16-bit activations (int16 outputs of {_summary(wide)}); the Edge TPU runs 8-bit "
            "integer models only")


def _float(g: GraphFacts) -> str | None:
    floating = [op.op for op in g.ops if g.output_dtypes(op) & FLOAT_DTYPES]
    float_io = [f"{kind} {g.tensors[i].name!r} is {g.tensors[i].dtype}"
                for kind, indices in (("input", g.inputs), ("output", g.outputs)) for i in indices
                if g.tensors[i].dtype in FLOAT_DTYPES]
    half = sum(1 for t in g.tensors if t.dtype == "float16")
    if not (floating or float_io or half):
        return None
    parts = ([f"float outputs of {_summary(floating)}"] if floating else []) + float_io + \
        ([f"{half} float16 tensor(s)"] if half else [])
    return (f"float computation ({'; '.join(parts)}); the Edge TPU runs full-integer models only "
            "(int8/uint8 activations, inputs and outputs): use the int8 variant")


def _other_dtypes(g: GraphFacts) -> str | None:
    counts: dict[str, int] = {}
    for t in g.tensors:
        if t.dtype not in ALLOWED_DTYPES:
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
    if not counts:
        return None
    listed = ", ".join(f"{dt} ({n} tensor(s))" for dt, n in sorted(counts.items()))
    return (f"tensor dtype(s) {listed}; the Edge TPU runs int8/uint8 tensors with int32 biases "
            "only")


def _dynamic_sizes(g: GraphFacts) -> str | None:
    for i in g.inputs:
        t = g.tensors[i]
        if t.shape_signature and t.shape_signature[0] == -1:
            return (f"dynamic batch dimension (input {t.name!r} has shape_signature "
                    f"{list(t.shape_signature)}); the Edge TPU needs every size fixed when the "
                    f"model is compiled: {FIX_BATCH_HINT}")
    dynamic = [t for t in g.tensors if -1 in t.shape_signature]
    if not dynamic:
        return None
    first = dynamic[0]
    return (f"dynamic sizes in {len(dynamic)} tensor(s) (e.g. {first.name!r} with shape_signature "
            f"{list(first.shape_signature)}); the Edge TPU needs every size fixed when the model "
            "is compiled")


def _batch(g: GraphFacts) -> str | None:
    for i in g.inputs:
        t = g.tensors[i]
        if len(t.shape) >= 2 and t.shape[0] != 1:
            return (f"batch {t.shape[0]} (input {t.name!r} has shape {list(t.shape)}); qskew runs "
                    f"the Edge TPU at batch 1: {FIX_BATCH_HINT}")
    return None


def _summary(ops: list[str]) -> str:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{op} x{n}" for op, n in counts.items())


