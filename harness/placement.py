"""Op placement: which ops of a job ran on the delegate and which fell back to the CPU.

Three sources can tell, each as far as it sees (the job's :class:`~harness.records.ExecutionPlan`,
recorded by the runner, says which one it came from):

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
    source                      interpreter | benchmark_model log | compiled_model | edgetpu_compiler
    node                        node index in execution order; -1 when the source names no node
    op                          operator name ("" for a whole-graph statement)
    count                       how many nodes the row stands for
    on                          delegate | cpu | partial (some of the graph) | unknown
    detail                      the source's own words (compiler status, log line), else ""
"""

from __future__ import annotations

from collections import Counter

from harness.records import ExecutionPlan

PLACEMENT_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "source": "str", "node": "int64",
    "op": "str", "count": "int64", "on": "str", "detail": "str",
}
EDGETPU_MAPPED = "Mapped to Edge TPU"  # the compiler's status for an op that runs on the TPU
INTERPRETER_SOURCE = "interpreter"           # ExecutionPlan.source of the Python runner
BENCHMARK_LOG_SOURCE = "benchmark_model log"  # ExecutionPlan.source of the benchmark_model runner
COMPILER_SOURCE = "edgetpu_compiler"
COMPILED_SOURCE = "compiled_model"  # ExecutionPlan.source of a CompiledModel job (device_runner/compiled.py)


def placement_rows(job: tuple[str, str, str], plan: ExecutionPlan | None) -> list[dict]:
    """Rows of PLACEMENT_COLUMNS for one job's execution plan (empty when nothing is known)."""
    if plan is None:
        return []
    rows = [_row(job, COMPILER_SOURCE, -1, op.op, op.count,
                 "delegate" if op.status.startswith(EDGETPU_MAPPED) else "cpu", op.status)
            for op in plan.compiler_ops or ()]
    if not plan.available:
        return rows
    source = plan.source or INTERPRETER_SOURCE  # a protocol 1.1 runner names no source
    if plan.placement is not None:
        rows += [_row(job, source, p.node, p.op, 1, p.on, "") for p in plan.placement]
    elif plan.ops is not None:   # a protocol 1.1 runner: counts per op name
        on_cpu, every = Counter(plan.cpu_ops or ()), Counter(plan.ops)
        for op, count in sorted(every.items()):
            for where, n in (("delegate", count - on_cpu[op]), ("cpu", on_cpu[op])):
                if n:
                    rows.append(_row(job, source, -1, op, n, where, ""))
    elif source in (BENCHMARK_LOG_SOURCE, COMPILED_SOURCE):  # whole-graph statements only
        rows.append(_row(job, source, -1, "", plan.delegate_partitions or 0,
                         _whole_graph(plan), " | ".join(plan.log_lines or ())))
    return rows


def _whole_graph(plan: ExecutionPlan) -> str:
    if plan.on in ("delegate", "partial", "cpu"):  # the runner said it (CompiledModel jobs)
        return plan.on
    if plan.fully_delegated:
        return "delegate"
    if plan.delegate_partitions:
        return "partial"
    return "cpu" if plan.fully_delegated is False else "unknown"


def _row(job, source, node, op, count, on, detail) -> dict:
    return {"variant": job[0], "target": job[1], "delegate": job[2], "source": source,
            "node": int(node), "op": str(op), "count": int(count), "on": on, "detail": str(detail)}
