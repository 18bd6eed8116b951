"""Op placement rows from each source an execution plan can come from."""

from __future__ import annotations

from harness.placement import placement_rows as _rows
from harness.records import ExecutionPlan

JOB = ("int8", "board", "edgetpu")


def placement_rows(job, plan: dict) -> list[dict]:
    """The rows of a plan given as the runner reports it (result.json's ``execution_plan``)."""
    return _rows(job, ExecutionPlan.from_json(plan))


def test_protocol_1_1_counts_split_each_op_between_delegate_and_cpu():
    plan = {"available": True, "ops": ["CONV_2D", "CONV_2D", "SHAPE", "FULLY_CONNECTED"],
            "cpu_ops": ["SHAPE", "CONV_2D"]}
    rows = {(r["op"], r["on"]): r["count"] for r in placement_rows(JOB, plan)}
    assert rows == {("CONV_2D", "delegate"): 1, ("CONV_2D", "cpu"): 1, ("SHAPE", "cpu"): 1,
                    ("FULLY_CONNECTED", "delegate"): 1}


def test_compiler_statuses_decide_tpu_or_cpu():
    plan = ExecutionPlan(available=False).with_compiler([
        {"op": "CONV_2D", "count": 2, "status": "Mapped to Edge TPU"},
        {"op": "QUANTIZE", "count": 1, "status": "Operation is otherwise supported, but not mapped "
                                                   "due to some unspecified limitation"}])
    rows = _rows(JOB, plan)
    assert [(r["source"], r["op"], r["count"], r["on"]) for r in rows] == [
        ("edgetpu_compiler", "CONV_2D", 2, "delegate"), ("edgetpu_compiler", "QUANTIZE", 1, "cpu")]
    assert rows[1]["detail"].startswith("Operation is otherwise supported")


def test_benchmark_model_statements_cover_the_whole_graph():
    def on(plan):
        return placement_rows(JOB, {"available": True, "source": "benchmark_model log", **plan})[0]["on"]

    assert on({"fully_delegated": True, "delegate_partitions": 1}) == "delegate"
    assert on({"fully_delegated": False, "delegate_partitions": 3}) == "partial"
    assert on({"fully_delegated": False, "delegate_partitions": 0}) == "cpu"
    assert on({"fully_delegated": None, "delegate_partitions": None}) == "unknown"


def test_nothing_known_gives_no_rows():
    assert placement_rows(JOB, {"available": False}) == []
    assert placement_rows(JOB, {}) == []
    assert _rows(JOB, None) == []
