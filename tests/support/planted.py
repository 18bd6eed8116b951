"""A planted difference for ``qskew bisect``: a copy of an int8 model with one op's weights moved
by one quantization step each, edited with the TFLite schema. Imported as ``support.planted``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def nudge_weights(model: Path, node: int, out: Path) -> int:
    """Write ``out``: ``model`` with every int8 weight of op ``node`` one step up (one down where it is
    already 127). Returns the index of the op's output tensor (where bisect must point)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    obj = fb.read_model_from_bytearray(bytearray(model.read_bytes()))
    sub = obj.subgraphs[0]
    op = sub.operators[node]
    weights = sub.tensors[int(op.inputs[1])]
    buf = obj.buffers[weights.buffer]
    values = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int8).astype(np.int16)
    nudged = np.where(values < 127, values + 1, values - 1).astype(np.int8)
    assert (nudged != values).all()
    buf.data = np.frombuffer(nudged.tobytes(), dtype=np.uint8)
    out.write_bytes(bytes(fb.convert_object_to_bytearray(obj)))
    return int(op.outputs[0])
