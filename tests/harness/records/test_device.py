"""harness/records/device.py: the records of what a job measured, and their round trip to the JSON
the run directory stores (the dicts below are what the code before these records wrote)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from harness.fsutil import dumps_json
from harness.on_device import Transfer
from harness.records import (CompilerOp, DeviceRun, ExecutionPlan, JobTransfer, NodePlacement, RepeatNoise,
                             Timings)

# A Python-runner job's stored timings (device_runner.run's keys, the host's, the latency).
PYTHON_TIMINGS = {"invoke_s": 0.011204, "load_s": 0.003117, "per_batch_s": [0.0031, 0.0029, 0.0011],
                  "prepare_s": 0.000402, "total_s": 0.015002, "host_push_s": 0.02, "host_run_s": 0.31,
                  "host_pull_s": 0.004, "latency_ms_per_sample": 0.04666666666666667}
# benchmark_model jobs' stored timings: every line found; a timing line missing (latency null).
BENCHMARK_TIMINGS = {"invocations": 2, "host_push_s": 0.1, "host_run_s": 0.3, "host_pull_s": 0.2,
                     "per_batch_s": [1.23457, 0.00025], "init_s": [0.1512, 1e-05], "invoke_s": 1.23482,
                     "latency_ms_per_sample": 12.348199999999999}
BENCHMARK_MISSING = {"invocations": 2, "host_push_s": 0.1, "host_run_s": 0.3, "host_pull_s": 0.2,
                     "per_batch_s": [1.23457], "init_s": [0.1512], "invoke_s": 1.23457, "timing_lines_missing": 1,
                     "latency_ms_per_sample": None}
TRANSFER = {"bytes_pushed": 49516, "bytes_pulled": 3572, "push_s": 0.123457, "run_s": 0.5, "pull_s": 0.01,
            "pushed": {"runner": 34858, "inputs": 9728, "model": 4416, "job": 514}}
NOISE = {"runs": 2, "failed": ["delegate: lost the GPU"], "identical": True, "max_abs_logit_diff": 0.0,
         "flip_rate_max": 0.0, "latency_ms_per_sample": [0.5, None], "latency_ms_median": 0.5,
         "latency_ms_min": 0.5, "latency_ms_max": 0.5, "latency_rel_spread": 0.0}
INTERPRETER_PLAN = {"available": True, "source": "interpreter", "nodes": 3, "delegated_nodes": 2,
                    "delegate_partitions": 1, "ops": ["CONV_2D", "SHAPE", "FULLY_CONNECTED"], "cpu_ops": ["SHAPE"],
                    "placement": [{"node": 0, "op": "CONV_2D", "on": "delegate"},
                                  {"node": 1, "op": "SHAPE", "on": "cpu"},
                                  {"node": 2, "op": "FULLY_CONNECTED", "on": "delegate"}]}


def stored(record) -> object:
    """What the run directory writes for ``record`` (strict JSON, read back)."""
    return json.loads(dumps_json(record.to_json()))


@pytest.mark.parametrize("data", [PYTHON_TIMINGS, BENCHMARK_TIMINGS, BENCHMARK_MISSING])
def test_timings_round_trip_to_the_stored_json(data):
    timings = Timings.from_json(data)
    assert stored(timings) == data
    assert Timings.from_json(timings.to_json()) == timings


def test_timings_are_typed_and_write_only_what_was_measured():
    t = Timings.from_json(PYTHON_TIMINGS)
    assert t.per_batch_s == (0.0031, 0.0029, 0.0011) and t.invocations is None and t.init_s is None
    # a runner of a newer minor protocol may report more: the host keeps what it knows
    assert Timings.from_json({**PYTHON_TIMINGS, "warmup_s": 1.0}) == t
    # a failed job's runner timings: no latency measured, written as null (the key is always there)
    failed = Timings.from_json({"per_batch_s": [], "total_s": 0.01})
    assert failed.to_json() == {"per_batch_s": [], "total_s": 0.01, "latency_ms_per_sample": None}


def test_nan_timings_are_written_as_null():
    t = Timings(per_batch_s=(0.1, float("nan")), invoke_s=float("nan"))
    assert stored(t) == {"invoke_s": None, "per_batch_s": [0.1, None], "latency_ms_per_sample": None}


def test_transfer_round_trip_and_the_running_counter_snapshot():
    record = JobTransfer.from_json(TRANSFER)
    assert stored(record) == TRANSFER and list(record.to_json()) == list(TRANSFER)
    counter = Transfer(pushed={"runner": 3, "model": 5}, bytes_pulled=7, push_s=0.1234567, run_s=1.0, pull_s=2.0)
    snap = counter.snapshot()
    assert snap == JobTransfer(bytes_pushed=8, bytes_pulled=7, push_s=0.123457, run_s=1.0, pull_s=2.0,
                               pushed={"runner": 3, "model": 5})
    counter.pushed["job"] = 1  # the job goes on; the record does not move with it
    assert snap.pushed == {"runner": 3, "model": 5}


def test_repeat_noise_round_trip_keeps_every_key_in_order():
    noise = RepeatNoise.from_json(NOISE)
    assert noise.failed == ("delegate: lost the GPU",) and noise.latency_ms_per_sample == (0.5, None)
    assert stored(noise) == NOISE and list(noise.to_json()) == list(NOISE)


def test_execution_plan_from_a_result_json_and_back():
    plan = ExecutionPlan.from_json(INTERPRETER_PLAN)
    assert plan.placement[1] == NodePlacement(node=1, op="SHAPE", on="cpu")
    assert plan.to_json() == INTERPRETER_PLAN and ExecutionPlan.from_json(plan.to_json()) == plan
    assert ExecutionPlan.from_json({"available": False}) == ExecutionPlan()
    assert ExecutionPlan().to_json() == {"available": False}
    joined = plan.with_compiler([{"op": "CONV_2D", "count": 2, "status": "Mapped to Edge TPU"}])
    assert joined.compiler_ops == (CompilerOp(op="CONV_2D", count=2, status="Mapped to Edge TPU"),)
    assert ExecutionPlan.from_json(joined.to_json()) == joined


def test_records_are_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Timings().invoke_s = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        JobTransfer(1, 2)  # type: ignore[misc]


def test_device_run_latency_from_the_timings():
    z = np.zeros((4, 2), np.float32)
    run = DeviceRun("int8", "dev", "xnnpack", None, z, timings=Timings(per_batch_s=(0.002, 0.002)))
    assert run.latency_ms_per_sample() == pytest.approx(1.0)
    assert dataclasses.replace(run, timings=Timings(latency_ms_per_sample=0.25)).latency_ms_per_sample() == 0.25
    assert DeviceRun("int8", "dev", "xnnpack", None, None, error="x").latency_ms_per_sample() is None


def test_a_compiled_jobs_plan_keeps_its_precision_and_runtime_report():
    # device_runner/compiled.py's plan for a GPU job, as result.json carries it (protocol 1.3)
    raw = {"available": True, "source": "LiteRT CompiledModel", "fully_delegated": True,
           "delegate_partitions": 1, "unproven": False, "delegate": "gpu",
           "precision": {"requested": "fp16", "reported": "unknown"},
           "runtime_report": {"accelerator_registered": "libLiteRtWebGpuAccelerator.so",
                              "adapter": "SwiftShader Device (Subzero)", "backend": "Vulkan",
                              "adapter_type": "CPU / Software", "fully_accelerated": True,
                              "precision_requested": "fp16", "precision_reported": "unknown",
                              "unproven": False, "evidence": [], "from_a_newer_runner": 1},
           "log_lines": ["GPU accelerator registered"]}
    plan = ExecutionPlan.from_json(raw)
    assert plan.precision.requested == "fp16" and plan.runtime_report.backend == "Vulkan"
    assert plan.unproven is False and plan.delegate == "gpu"
    back = plan.to_json()
    assert back["runtime_report"] == {k: v for k, v in raw["runtime_report"].items() if k != "from_a_newer_runner"}
    assert back["precision"] == raw["precision"] and back["unproven"] is False
