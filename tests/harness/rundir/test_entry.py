"""The summary entry record: its JSON keys, their order, and nulls where a field does not apply."""

from __future__ import annotations

import dataclasses
import math

import pytest

from harness.metrics.disparity import Disparity
from harness.metrics.groups import DISPARITY_COLUMNS, JOB_COLUMNS
from harness.records import DeviceRun, ExecutionPlan, Timings
from harness.records.device import AcceleratorReport, Precision
from harness.rundir.entry import SummaryEntry

HEAD = ["variant", "target", "delegate", "status", "stage", "error", "artifact_sha256", "runtime",
        "runtime_version", "delegate_applied", "batch_size", "latency_ms_per_sample", "timings", "transfer",
        "repeat"]
NUMBERS = [k for k in DISPARITY_COLUMNS if k not in JOB_COLUMNS]


def _disparity(**changes) -> Disparity:
    values = {f.name: {"int": 7, "float": 0.5, "str": "g"}[f.type] for f in dataclasses.fields(Disparity)}
    return Disparity(**{**values, **changes})


def test_a_failed_job_has_every_key_with_nulls_and_no_runtime_facts():
    run = DeviceRun("int8", "phone", "gpu", None, logits=None, error="device lost")
    entry = SummaryEntry.from_run(run, status="failed", stage="run").to_json()
    assert list(entry) == HEAD + NUMBERS + ["config_hash"]
    assert entry["timings"] == {} and entry["transfer"] == {} and entry["repeat"] is None
    assert all(entry[k] is None for k in NUMBERS + ["runtime", "batch_size", "config_hash"])
    assert (entry["status"], entry["stage"], entry["error"]) == ("failed", "run", "device lost")


def test_runtime_facts_sit_between_the_records_and_the_numbers():
    plan = ExecutionPlan(precision=Precision(requested="fp16", reported="fp32"),
                         runtime_report=AcceleratorReport(adapter="Adreno 740", backend="opencl"))
    run = DeviceRun("int8", "phone", "gpu", "a" * 64, logits=None, runtime="litert", batch_size=8,
                    timings=Timings(load_s=0.5, latency_ms_per_sample=2.0), execution_plan=plan)
    entry = SummaryEntry.from_run(run, status="ok", disparity=_disparity(psi=math.nan))
    got = dataclasses.replace(entry, config_hash="h").to_json()
    assert list(got) == HEAD + ["precision_requested", "precision_reported", "gpu_adapter"] + NUMBERS + ["config_hash"]
    assert got["gpu_adapter"] == "Adreno 740 (opencl)" and got["precision_reported"] == "fp32"
    assert got["timings"] == {"load_s": 0.5, "latency_ms_per_sample": 2.0} and got["latency_ms_per_sample"] == 2.0
    assert got["n"] == 7 and got["psi"] is None and got["worst_group"] == "g" and got["config_hash"] == "h"


def test_the_entry_is_frozen_and_keyword_only():
    entry = SummaryEntry(variant="int8", target="t", delegate="d", status="ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.status = "failed"
    with pytest.raises(TypeError):
        SummaryEntry("int8", "t", "d", "ok")
