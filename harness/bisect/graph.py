"""A .tflite model's graph as bisect needs it, read and edited with LiteRT's TFLite flatbuffer schema
(``ai_edge_litert.schema_py_generated`` and ``ai_edge_litert.tools.flatbuffer_utils``), never by
byte surgery.

* :func:`graph_facts`: the main subgraph's ops in execution order (the order of ``operators``),
  each with its type, builtin options, output tensors and how its weights are quantized;
* :func:`promote_outputs`: a copy of the model whose every op output is also a model output, after
  the original outputs (output 0 stays output 0): a delegate then hands each of them back, so the
  tensors inside a delegated partition become visible;
* :func:`cut_op`: a copy holding one op alone, its first activation input as the model input and
  its output as the model output -- the hand-made "cut the model" check, done by the schema.

>>> facts = graph_facts(Path("int8.tflite").read_bytes())        # doctest: +SKIP
>>> facts.ops[0].op, facts.ops[0].options                         # doctest: +SKIP
('CONV_2D', 'padding=SAME stride=1x1 dilation=1x1 activation=RELU')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import ArtifactError

# Option fields whose integers are enums of the schema: shown by name.
_ENUM_OPTIONS = {"padding": "Padding", "fusedActivationFunction": "ActivationFunctionType"}
_OPTION_NAMES = {"fusedActivationFunction": "activation"}
PROMOTED_PREFIX = "qskew_t"  # signature name of a promoted output: qskew_t<tensor index>


@dataclass(frozen=True)
class OpFacts:
    """One op of the model, in execution order."""

    node: int                      # its index in the subgraph's operators (= the interpreter's node)
    op: str                        # builtin name, e.g. "CONV_2D"
    options: str                   # builtin options, "key=value" separated by spaces ("" if none)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    weights: str                   # "per-channel", "per-tensor", "float" or "" (no constant input)


@dataclass(frozen=True)
class TensorFacts:
    index: int
    name: str
    constant: bool                 # backed by a buffer with data (weights, biases, shapes)


@dataclass(frozen=True)
class GraphFacts:
    ops: tuple[OpFacts, ...]
    tensors: tuple[TensorFacts, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def producer(self) -> dict[int, OpFacts]:
        """tensor index -> the op that writes it."""
        return {t: op for op in self.ops for t in op.outputs}


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    return schema, fb


def read_model(data: bytes, what: str = "model") -> Any:
    """The model as the schema's object tree (``ModelT``); ArtifactError if it is not a .tflite."""
    _, fb = _schema()
    try:
        model = fb.read_model_from_bytearray(bytearray(data))
    except Exception as exc:  # the flatbuffer reader raises anything on bad bytes
        raise ArtifactError(f"{what} is not a TFLite flatbuffer: {exc}") from exc
    if not model.subgraphs:
        raise ArtifactError(f"{what} has no subgraph")
    return model


def graph_facts(data: bytes, what: str = "model") -> GraphFacts:
    """The main subgraph's ops and tensors (see the module docstring)."""
    schema, fb = _schema()
    model = read_model(data, what)
    sub = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tensors = tuple(TensorFacts(i, _text(t.name), _has_data(model, t)) for i, t in enumerate(sub.tensors))
    ops = []
    for node, op in enumerate(sub.operators):
        code = fb.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        ops.append(OpFacts(node=node, op=names.get(code, f"OP_{code}"), options=_options(schema, op.builtinOptions),
                           inputs=tuple(int(i) for i in _ints(op.inputs)),
                           outputs=tuple(int(i) for i in _ints(op.outputs)),
                           weights=_weights(sub, tensors, op)))
    return GraphFacts(ops=tuple(ops), tensors=tensors, inputs=tuple(int(i) for i in _ints(sub.inputs)),
                      outputs=tuple(int(i) for i in _ints(sub.outputs)))


def promote_outputs(data: bytes, what: str = "model", skip_ops: tuple[str, ...] = ()) -> bytes:
    """A copy whose op outputs are all model outputs (original outputs first, order kept) but
    those of ``skip_ops``; the signature lists each promoted tensor as output ``qskew_t<index>``."""
    schema, fb = _schema()
    model = read_model(data, what)
    sub = model.subgraphs[0]
    outputs = [int(i) for i in _ints(sub.outputs)]
    skipped = {op.node for op in graph_facts(data, what).ops if op.op in skip_ops}
    promoted = []
    for node, op in enumerate(sub.operators):
        if node in skipped:
            continue
        promoted += [int(t) for t in _ints(op.outputs) if int(t) >= 0 and int(t) not in outputs + promoted]
    sub.outputs = outputs + promoted
    for signature in model.signatureDefs or []:  # CompiledModel reads outputs through the signature
        if signature.subgraphIndex == 0:
            signature.outputs = list(signature.outputs or []) + [_tensor_map(schema, t) for t in promoted]
    return bytes(fb.convert_object_to_bytearray(model))


def _tensor_map(schema, index: int):
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = f"{PROMOTED_PREFIX}{index}", index
    return entry


def cut_op(data: bytes, node: int, what: str = "model") -> bytes:
    """A copy running op ``node`` alone: model input = its first non-constant input, output = its
    first output. ArtifactError when the op has no such input (it reads constants only)."""
    _, fb = _schema()
    model = read_model(data, what)
    sub = model.subgraphs[0]
    op = sub.operators[node]
    facts = graph_facts(data, what).tensors
    activations = [int(t) for t in _ints(op.inputs) if int(t) >= 0 and not facts[int(t)].constant]
    if len(activations) != 1:
        raise ArtifactError(f"{what}: op {node} has {len(activations)} activation inputs; cut_op takes one")
    sub.operators = [op]
    sub.inputs, sub.outputs = activations, [int(_ints(op.outputs)[0])]
    model.signatureDefs = []  # the signature names the old inputs and outputs
    return bytes(fb.convert_object_to_bytearray(model))


def _options(schema, options: Any) -> str:
    if options is None:
        return ""
    parts = []
    for key, value in sorted(vars(options).items()):
        if value is None or isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
            continue
        if key in _ENUM_OPTIONS:
            enum = getattr(schema, _ENUM_OPTIONS[key])
            value = next((k for k, v in vars(enum).items() if v == value and not k.startswith("_")), value)
        parts.append(f"{_OPTION_NAMES.get(key, key)}={value}")
    return " ".join(parts)


def _weights(sub: Any, tensors: tuple[TensorFacts, ...], op: Any) -> str:
    """How the op's first constant multi-dimensional input (its weights) is quantized."""
    for t in _ints(op.inputs):
        if t < 0 or not tensors[t].constant:
            continue
        tensor = sub.tensors[t]
        if tensor.shape is None or len(tensor.shape) < 2:
            continue
        q = tensor.quantization
        scales = list(q.scale) if q is not None and q.scale is not None else []
        if not scales:
            return "float"
        return "per-channel" if len(scales) > 1 else "per-tensor"
    return ""


def _has_data(model: Any, tensor: Any) -> bool:
    buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buf is not None and (buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0)))


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _text(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")
