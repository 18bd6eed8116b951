"""Tensor by tensor, where job A's values part from job B's (the reference), per sample and group.

Rows follow B's graph in execution order: the model input, then each op's outputs. For every
sample and tensor (also where nothing differs):

* integer tensors: the difference in quantization steps of B's tensor, ``|deq(a) - deq(b)| /
  scale_b`` (plain integer units when the tensor has no scale): for two runs of one model it is
  exactly ``|a - b|``;
* float tensors: relative to the sample's largest magnitude in B's tensor, ``|a - b| / max|b|``;

``max_diff``, ``mean_diff`` and ``frac_diff`` (share of elements that differ at all); ``exceeds``
when ``max_diff`` is above the tolerance (STEP_TOLERANCE, FLOAT_TOLERANCE); ``first`` marks each
sample's first exceeding tensor. A tensor job A could not see (computed inside a delegate's
partition and not promoted) has NaN metrics and ``on_a`` = "hidden"; a tensor that left a
delegate's partition has ``on_a`` = "delegate" and ``partition`` = that DELEGATE node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.bisect.dump import KeptTensor, TensorDump
from harness.bisect.graph import GraphFacts
from harness.records.bisect import COLUMNS

if TYPE_CHECKING:
    import pandas as pd

STEP_TOLERANCE = 0.0      # integer tensors: one quantization step is already a different result
FLOAT_TOLERANCE = 1e-5    # float tensors: above float32 rounding noise of a reordered sum (~1e-7)


def tensor_order(graph: GraphFacts) -> list[tuple[int, int]]:
    """(tensor index, producing node or -1) in execution order: model inputs, then op outputs."""
    order = [(t, -1) for t in graph.inputs]
    seen = set(graph.inputs)
    for op in graph.ops:
        for t in op.outputs:
            if t >= 0 and t not in seen:
                seen.add(t)
                order.append((t, op.node))
    return order


def compare_dumps(a: TensorDump, b: TensorDump, graph: GraphFacts, ids: np.ndarray, groups: np.ndarray,
                  step_tolerance: float = STEP_TOLERANCE, float_tolerance: float = FLOAT_TOLERANCE) -> "pd.DataFrame":
    """The bisect table (columns ``harness.records.bisect.COLUMNS``), one row per sample and tensor."""
    import pandas as pd

    kept_a = {k.name: k for k in a.kept}
    kept_b = {k.index: k for k in b.kept}
    ops = {op.node: op for op in graph.ops}
    parts = []
    for order, (index, node) in enumerate(tensor_order(graph)):
        tb = kept_b.get(index)
        name = graph.tensors[index].name
        ta = kept_a.get(name)
        op = ops.get(node)
        metrics = _metrics(a.values[ta.index], b.values[index], ta, tb) \
            if ta is not None and tb is not None else _hidden(len(ids))
        unit = "relative" if tb is not None and tb.dtype.startswith("float") else "steps"
        tolerance = float_tolerance if unit == "relative" else step_tolerance
        parts.append(pd.DataFrame({
            "sample": ids, "group": groups, "order": order, "tensor": name, "tensor_index": index,
            "op": op.op if op else "INPUT", "node": node, "options": op.options if op else "",
            "weights": op.weights if op else "", "dtype": tb.dtype if tb else "", "unit": unit,
            **metrics, "exceeds": metrics["max_diff"] > tolerance,
            "on_a": ta.on if ta is not None else "hidden",
            "partition": ta.node if ta is not None and ta.on == "delegate" else -1}))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    table = table.sort_values(["sample", "order"], kind="stable", key=_sample_key(ids)).reset_index(drop=True)
    first = table[table["exceeds"]].groupby("sample", sort=False).head(1).index
    table["first"] = False
    table.loc[first, "first"] = True
    return table[list(COLUMNS)]


def _sample_key(ids: np.ndarray):
    position = {s: i for i, s in enumerate(ids.tolist())}

    def key(col):
        return col.map(position) if col.name == "sample" else col
    return key


def _metrics(a: np.ndarray, b: np.ndarray, ta: KeptTensor, tb: KeptTensor) -> dict[str, np.ndarray]:
    """Per sample: max and mean difference (steps or relative) and the share of elements that differ."""
    n = b.shape[0]
    if a.shape != b.shape:
        nan = np.full(n, np.nan)
        return {"max_diff": np.full(n, np.inf), "mean_diff": nan, "frac_diff": np.ones(n)}
    a2, b2 = a.reshape(n, -1), b.reshape(n, -1)
    if b2.shape[1] == 0:
        zero = np.zeros(n)
        return {"max_diff": zero, "mean_diff": zero, "frac_diff": zero}
    if tb.dtype.startswith("float"):
        fa, fb = a2.astype(np.float64), b2.astype(np.float64)
        scale = np.maximum(np.abs(fb).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
        d = np.abs(fa - fb) / scale
    elif tb.scale > 0 and ta.scale > 0:
        d = np.abs((a2.astype(np.float64) - ta.zero_point) * ta.scale
                   - (b2.astype(np.float64) - tb.zero_point) * tb.scale) / tb.scale
        if ta.scale == tb.scale and ta.zero_point == tb.zero_point:
            d = np.abs(a2.astype(np.int64) - b2.astype(np.int64)).astype(np.float64)
    else:
        d = np.abs(a2.astype(np.float64) - b2.astype(np.float64))
    return {"max_diff": d.max(axis=1), "mean_diff": d.mean(axis=1), "frac_diff": (d > 0).mean(axis=1)}


def _hidden(n: int) -> dict[str, np.ndarray]:
    nan = np.full(n, np.nan)
    return {"max_diff": nan, "mean_diff": nan, "frac_diff": nan}
