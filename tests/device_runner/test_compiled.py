"""device_runner/compiled.py: LiteRT's CompiledModel delegates (gpu, gpu-fp32, cpu-compiled) through the
Python runner on a LocalTarget, against the CPU reference kernels per group.

The GPU runs on SwiftShader's Vulkan (Debian's chromium installs its ICD; libvulkan1 is the loader).
Where neither exists the GPU tests skip with the reason -- except under CI (``CI`` set), where a
missing SwiftShader is a failure: CI can never go green by skipping the GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from harness.placement import placement_rows
from harness.records import ExecutionPlan, ModelArtifact, Precision
from harness.runners.python import run_job
from harness.targets.local import LocalTarget
from support import tiny_models as tiny
from support.vulkan import use_swiftshader

N_SAMPLES = 42  # 10 batches of 4 and a padded one
FP32_TOLERANCE = 1e-4  # SwiftShader computes in fp32: differences are rounding only


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "host-cache"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


@pytest.fixture
def swiftshader(monkeypatch, tmp_path):
    use_swiftshader(monkeypatch, tmp_path)


def artifact(path: Path, variant: str = "v") -> ModelArtifact:
    data = path.read_bytes()
    return ModelArtifact(variant=variant, path=path, sha256=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data), inputs=(), outputs=(), recipe={})


def job(tmp_path, model: Path, delegate: str, **kwargs):
    test = tiny.make_test_set(N_SAMPLES)
    return test, run_job(LocalTarget(tmp_path / "device"), artifact(model), test, delegate,
                         num_threads=1, batch_size=4, **kwargs)


@pytest.mark.parametrize("delegate, precision", [("gpu", "fp16"), ("gpu-fp32", "fp32")])
def test_gpu_on_swiftshader_matches_the_reference_kernels_per_group(models, tmp_path, swiftshader,
                                                                    delegate, precision):
    test, run = job(tmp_path, models["fixed4"], delegate)
    _, ref = job(tmp_path, models["fixed4"], "reference")
    assert run.ok and ref.ok, (run.error, ref.error)
    plan = run.execution_plan
    assert run.delegate_applied == delegate and plan.fully_delegated is True
    assert plan.runtime_report.adapter.startswith("SwiftShader")
    assert plan.runtime_report.backend == "Vulkan"
    assert plan.precision == Precision(requested=precision, reported="unknown")
    for group in np.unique(test.group):
        sel = test.group == group
        diff = np.abs(run.logits[sel] - ref.logits[sel]).max()
        assert diff < FP32_TOLERANCE, (group, diff)


def test_cpu_compiled_runs_the_same_api_on_the_cpu(models, tmp_path):
    _, run = job(tmp_path, models["fixed4"], "cpu-compiled")
    _, ref = job(tmp_path, models["fixed4"], "reference")
    assert run.ok, run.error
    assert run.delegate_applied == "cpu-compiled" and run.execution_plan.fully_delegated is False
    assert np.abs(run.logits - ref.logits).max() < FP32_TOLERANCE


def test_a_dynamic_batch_fails_at_stage_delegate_with_the_runtimes_words(models, tmp_path, swiftshader):
    _, run = job(tmp_path, models["fp32"], "gpu")
    assert not run.ok and run.error.startswith("delegate:")
    assert "static-sized tensors" in run.error and "fixed_batch" in run.error


def test_no_vulkan_device_fails_at_stage_delegate_naming_the_missing_piece(models, tmp_path, monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-such-icd.json"))
    _, run = job(tmp_path, models["fixed4"], "gpu")
    assert not run.ok and run.error.startswith("delegate:")
    assert "No adapters found" in run.error or "libvulkan" in run.error
    assert "Vulkan" in run.error


def test_int8_on_the_gpu_is_unproven_by_default_and_kept_labelled_when_allowed(models, tmp_path, swiftshader):
    _, refused = job(tmp_path, models["fixed4_int8"], "gpu")
    assert not refused.ok and refused.error.startswith("delegate:")
    assert "not proven" in refused.error and "is_fully_accelerated() is True" in refused.error
    # the independent check: the first batch against the CPU reference kernels and XNNPACK
    assert ("the first 4 GPU outputs against the same samples on the CPU: reference: bit-identical, "
            "xnnpack: bit-identical -- outputs bit-identical to a CPU path are not evidence of the GPU"
            ) in refused.error
    assert "Failed to get buffer requirements" in refused.error
    _, kept = job(tmp_path, models["fixed4_int8"], "gpu", allow_unproven=True)
    assert kept.ok, kept.error
    assert kept.delegate_applied == "gpu (unproven)" and kept.execution_plan.unproven is True
    comparison = kept.execution_plan.runtime_report.cpu_comparison.to_json()
    assert comparison["samples"] == 4 and comparison["reference"]["identical"] is True


@pytest.mark.parametrize("delegate", ["gpu", "gpu-fp32"])
def test_a_float_gpu_job_records_its_comparison_with_both_cpu_paths(models, tmp_path, swiftshader, delegate):
    _, run = job(tmp_path, models["fixed4"], delegate)
    assert run.ok, run.error
    report = run.execution_plan.runtime_report
    comparison = report.cpu_comparison.to_json()
    for path in ("reference", "xnnpack"):  # SwiftShader's fp32 differs from both, by rounding only
        assert comparison[path]["identical"] is False and 0 < comparison[path]["max_abs_diff"] < FP32_TOLERANCE
    assert report.unproven is False and "against the same samples on the CPU" in report.evidence[-1]


def test_a_model_not_placed_whole_fails_unless_partial_placement_is_allowed(models, tmp_path, swiftshader,
                                                                          monkeypatch):
    """SwiftShader takes every model we could build whole, so the runtime's answer is replaced
    (is_fully_accelerated() False) in the runner's own process; the rest is the real GPU path."""
    from device_runner import compiled, protocol
    from device_runner.run import main

    real = compiled.open_compiled

    class Partly:
        def __init__(self, model):
            self._model = model

        def __getattr__(self, name):
            return getattr(self._model, name)

        def is_fully_accelerated(self):
            return False

    def opened(*args):
        model, buffers, log_text = real(*args)
        return Partly(model), buffers, log_text

    monkeypatch.setattr(compiled, "open_compiled", opened)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    np.save(job_dir / "inputs.npy", tiny.make_inputs(6))
    for allow, code in ((False, protocol.EXIT_RUNTIME), (True, protocol.EXIT_OK)):
        spec = protocol.make_job(str(models["fixed4"]), "inputs.npy", {"scale": tiny.PREPROCESS_SCALE, "offset": 0},
                                 "gpu", 1, 4, allow_partial=allow)
        (job_dir / protocol.JOB_FILE).write_text(protocol.dumps(spec))
        assert main([str(job_dir)]) == code
        result = json.loads((job_dir / protocol.DEFAULT_RESULT).read_text())
        plan = result["execution_plan"]
        assert plan["on"] == ("partial" if allow else "cpu")
        if not allow:
            assert result["error_kind"] == "delegate" and "allow_partial = true" in result["error"]
            continue
        assert result["status"] == "ok" and result["delegate_applied"] == "gpu (partial)"
        rows = placement_rows(("v", "local", "gpu"), ExecutionPlan.from_json(plan))
        assert [(r["source"], r["on"]) for r in rows] == [("compiled_model", "partial")]
        assert rows[0]["detail"].startswith("is_fully_accelerated() is False: some ops ran on the CPU")


def test_judge_proves_an_integer_model_only_by_outputs_that_differ_from_every_cpu_path():
    from device_runner import compiled
    from device_runner.jobdir import JobFailure

    def report(evidence=()):
        return {"integer_io": True, "evidence": list(evidence), "unproven": False}

    differs = {"samples": 4, "reference": {"identical": False, "max_abs_diff": 2.0},
               "xnnpack": {"identical": False, "max_abs_diff": 1.0}}
    assert compiled.judge("gpu", report(), differs, False, False) == "gpu"
    assert compiled.judge("gpu", report(), differs, False, True) == "gpu (partial)"
    same = dict(differs, xnnpack={"identical": True, "max_abs_diff": 0.0})
    with pytest.raises(JobFailure, match="xnnpack: bit-identical -- outputs bit-identical"):
        compiled.judge("gpu", report(), same, False, False)
    assert compiled.judge("gpu", report(), same, True, True) == "gpu (partial, unproven)"
    nothing_ran = {"samples": 4, "reference": {"error": "boom"}, "xnnpack": {"error": "boom"}}
    with pytest.raises(JobFailure, match=r"reference: could not run \(boom\)"):
        compiled.judge("gpu-fp32", report(), nothing_ran, False, False)
    with pytest.raises(JobFailure, match="buffer requirements"):  # the runtime's warning outweighs
        compiled.judge("gpu", report(["Failed to get buffer requirements for tensor `x`."]), differs, False, False)
