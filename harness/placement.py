"""Op placement: which ops of a job ran on the delegate and which fell back to the CPU.

Three sources can tell, each as far as it sees (the job's ``execution_plan``, recorded by the
runner, says which one it came from):

- ``interpreter``: the Python runner reads the interpreter's node list after prepare; each original
  node is marked "delegate" or "cpu" (protocol 1.2 ``placement``; a 1.1 runner gives counts per op).
- ``benchmark_model log``: the binary's delegate log says whether the graph is executed completely,
  partially (with N delegate kernels) or not at all by the delegate; no per-node detail.
- ``compiled_model``: LiteRT's CompiledModel says only whether the whole graph is accelerated
  (``is_fully_accelerated()``); a job run with ``allow_partial`` is one row "partial" whose detail
  says that the runtime does not tell which ops ran on the CPU, with its log lines.
- ``edgetpu_compiler``: the compiler's log gives each operator's count and status ("Mapped to Edge
  TPU", or why not); ops not mapped run on the CPU.

:func:`placement_rows` turns one job's plan into rows of :data:`PLACEMENT_COLUMNS`::

    variant, target, delegate   the job
    source                      interpreter | benchmark_model log | edgetpu_compiler
    node                        node index in execution order; -1 when the source names no node
    op                          operator name ("" for a whole-graph statement)
    count                       how many nodes the row stands for
    on                          delegate | cpu | partial (some of the graph) | unknown
    detail                      the source's own words (compiler status, log line), else ""
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

PLACEMENT_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "source": "str", "node": "int64",
    "op": "str", "count": "int64", "on": "str", "detail": "str",
}
EDGETPU_MAPPED = "Mapped to Edge TPU"  # the compiler's status for an op that runs on the TPU


def placement_rows(job: tuple[str, str, str], plan: Mapping[str, Any]) -> list[dict]:
    """Rows of PLACEMENT_COLUMNS for one job's execution plan (empty when nothing is known)."""
    rows = []
    compiler = plan.get("compiler") or {}
    for op in compiler.get("ops") or []:
        status = str(op.get("status", ""))
        rows.append(_row(job, "edgetpu_compiler", -1, op.get("op", ""), int(op.get("count", 1)),
                         "delegate" if status.startswith(EDGETPU_MAPPED) else "cpu", status))
    if not plan.get("available"):
        return rows
    source = str(plan.get("source") or "interpreter")
    if plan.get("placement") is not None:
        rows += [_row(job, source, int(p["node"]), p["op"], 1, p["on"], "") for p in plan["placement"]]
    elif plan.get("ops") is not None:   # a protocol 1.1 runner: counts per op name
        on_cpu, every = Counter(plan.get("cpu_ops") or []), Counter(plan["ops"])
        for op, count in sorted(every.items()):
            for where, n in (("delegate", count - on_cpu[op]), ("cpu", on_cpu[op])):
                if n:
                    rows.append(_row(job, source, -1, op, n, where, ""))
    elif "fully_delegated" in plan:     # benchmark_model's log: whole-graph statements
        rows.append(_row(job, source, -1, "", int(plan.get("delegate_partitions") or 0),
                         _whole_graph(plan), " | ".join(plan.get("log_lines") or [])))
    return rows


def _whole_graph(plan: Mapping[str, Any]) -> str:
    if plan.get("on") in ("delegate", "partial", "cpu"):  # the runner said it (CompiledModel jobs)
        return plan["on"]
    if plan.get("fully_delegated"):
        return "delegate"
    if plan.get("delegate_partitions"):
        return "partial"
    return "cpu" if plan.get("fully_delegated") is False else "unknown"


def _row(job, source, node, op, count, on, detail) -> dict:
    return {"variant": job[0], "target": job[1], "delegate": job[2], "source": source,
            "node": int(node), "op": str(op), "count": int(count), "on": on, "detail": str(detail)}
