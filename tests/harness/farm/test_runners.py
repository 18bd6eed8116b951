"""farm.runners: what it adds around a runner's DeviceRun (device names, compiler reports)."""

from pathlib import Path

from harness.farm.runners import _naming_device, _with_compiler_report
from harness.placement import placement_rows
from harness.records import DeviceRun, ExecutionPlan, ModelArtifact

REPORT = {"source": "edgetpu_compiler", "compiler_version": "16.0.384591198", "mapped_ops": 3, "total_ops": 4,
          "ops": [{"op": "CONV_2D", "count": 3, "status": "Mapped to Edge TPU"},
                  {"op": "SOFTMAX", "count": 1, "status": "Operation is working on an unsupported data type"}]}


def _artifact(recipe):
    return ModelArtifact("int8", Path("m.tflite"), "s", 1, (), (), recipe)


def _run(error=None):
    return DeviceRun("int8", "coral", "edgetpu", "s", logits=None if error else [[0.0]], error=error,
                     execution_plan=ExecutionPlan(available=True, placement=()))


def test_the_compiler_report_joins_the_execution_plan_and_placement():
    run = _with_compiler_report(_run(), _artifact({"edgetpu": REPORT}))
    rows = placement_rows(("int8", "coral", "edgetpu"), run.execution_plan)
    assert [(r["op"], r["count"], r["on"]) for r in rows] == [("CONV_2D", 3, "delegate"), ("SOFTMAX", 1, "cpu")]
    assert run.execution_plan.compiler_ops[1].status == REPORT["ops"][1]["status"]
    assert _with_compiler_report(_run(), _artifact({})).execution_plan == ExecutionPlan(available=True, placement=())


def test_delegate_errors_name_the_device_once():
    named = _naming_device(_run("delegate: libedgetpu.so.1 failed to load"), "coral")
    assert named.error == "delegate: libedgetpu.so.1 failed to load (on device coral)"
    assert _naming_device(named, "coral").error == named.error
    assert _naming_device(_run("invoke: boom"), "coral").error == "invoke: boom"


def test_a_missing_benchmark_model_binary_is_named_before_anything_runs(tmp_path):
    import pytest

    from harness.errors import ConfigError
    from harness.farm.inventory import DeviceSpec
    from harness.farm.runners import run_on_device

    spec = DeviceSpec("phone", "local", runner="benchmark_model", benchmark_model=str(tmp_path / "bm"))
    with pytest.raises(ConfigError, match=r"device phone: benchmark_model binary .*bm does not exist"):
        run_on_device(spec, None, _artifact({}), None, "xnnpack")


def test_nan_logits_fail_the_job_at_stage_outputs(monkeypatch):
    import numpy as np

    from harness.errors import FailureStage, failure_stage
    from harness.farm import runners
    from harness.farm.inventory import DeviceSpec
    from support.tiny_models import make_test_set

    test = make_test_set(4)
    logits = np.ones((4, 3), np.float32)
    logits[2, 1] = np.nan

    class NaNRunner:
        def run(self, spec, target, artifact, test, delegate, **options):
            return DeviceRun("fp32", "phone", delegate, "s", logits=logits)

    monkeypatch.setattr(runners.registry, "get", lambda kind: NaNRunner())
    run = runners.run_on_device(DeviceSpec("phone", "local"), None, _artifact({}), test, "xnnpack")
    assert not run.ok and run.logits is None
    assert run.error.startswith("outputs: 1 of 4 samples have NaN or infinite logits")
    assert failure_stage(run) is FailureStage.OUTPUTS
