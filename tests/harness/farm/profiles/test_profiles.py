"""harness.farm.profiles with profile = "edgetpu", driven through harness.farm.runners.run_on_device
on a local device: refusals push nothing; a missing libedgetpu names the library and the device."""

import ctypes
import dataclasses

import numpy as np
import pytest

from harness.errors import FailureStage, JobFailed
from harness.farm import profiles
from harness.farm.inventory import DeviceSpec
from harness.farm.runners import run_on_device
from harness.targets.local import LocalTarget


def _device_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("variant, delegate, reason", [
    ("int16x8", "edgetpu", "16-bit activations"),
    ("mixed", "edgetpu:usb", "mixed 8/16-bit model"),
    ("fp32", "edgetpu", "float computation"),
    ("dynamic", "edgetpu", "float computation"),
    ("float16", "edgetpu", "float16 tensor(s)"),
    ("int8", "edgetpu", "dynamic batch dimension"),
    ("int16x8", "xnnpack", "16-bit activations"),  # the board's CPU runs the TPU's models only
])
def test_refused_variants_fail_with_a_reason_and_push_nothing(dynamic_variants, tiny_data, edgetpu_device,
                                                              tmp_path, variant, delegate, reason):
    device_dir = tmp_path / "device"
    target = LocalTarget(device_dir, name=edgetpu_device.name)
    with pytest.raises(JobFailed) as failed:
        run_on_device(edgetpu_device, target, dynamic_variants[variant], tiny_data.subset("test"), delegate)
    assert failed.value.stage is FailureStage.PROFILE
    assert str(failed.value).startswith(f"profile: device coral-bench (edgetpu): variant {variant!r}: ")
    assert reason in str(failed.value)
    assert _device_files(device_dir) == []  # no runner, no inputs, no model reached the device


def test_refusals_of_the_16_bit_variants_hold_with_a_fixed_batch(fixed_variants, edgetpu_device):
    for name in ("int16x8", "mixed"):
        why = profiles.refusal(edgetpu_device, fixed_variants[name], "edgetpu")
        assert why.startswith(f"variant {name!r}: ") and "8-bit integer models only" in why
    assert profiles.refusal(edgetpu_device, fixed_variants["int8"], "edgetpu") is None


def test_devices_without_a_profile_refuse_nothing_and_prepare_nothing(dynamic_variants):
    plain = DeviceSpec(name="pixel", reach="local")
    art = dynamic_variants["int16x8"]
    assert profiles.refusal(plain, art, "edgetpu") is None
    assert profiles.prepare(plain, art, delegate="edgetpu") is art


def test_a_failed_conversion_is_left_to_report_itself(dynamic_variants, edgetpu_device):
    broken = dataclasses.replace(dynamic_variants["int8"], path=None, error="variant 'int8' failed")
    assert profiles.refusal(edgetpu_device, broken, "edgetpu") is None


def test_prepare_compiles_for_the_edgetpu_delegate_only(fixed_variants, copy_of, edgetpu_device,
                                                        fake_compiler, edgetpu_cache):
    int8 = copy_of(fixed_variants["int8"])
    for delegate in (None, "xnnpack", "reference", "builtin"):
        assert profiles.prepare(edgetpu_device, int8, delegate=delegate) is int8
    assert not fake_compiler.exists()
    for delegate in ("edgetpu", "edgetpu:usb"):
        compiled = profiles.prepare(edgetpu_device, int8, delegate=delegate)
        assert compiled.ok and compiled.recipe["edgetpu"]["source"] == "edgetpu_compiler"
        assert compiled.recipe["edgetpu"]["mapped_ops"] == compiled.recipe["edgetpu"]["total_ops"] == 4


def test_without_compiler_or_precompiled_model_the_job_fails_before_any_push(
        fixed_variants, copy_of, edgetpu_device, tiny_data, no_compiler, tmp_path):
    from harness.runners import python as py_runner

    int8 = copy_of(fixed_variants["int8"])
    prepared = profiles.prepare(edgetpu_device, int8, delegate="edgetpu")
    assert not prepared.ok
    assert prepared.error.startswith("device coral-bench (edgetpu): variant 'int8': no Edge TPU model")
    assert "edgetpu_compiler is not on the PATH" in prepared.error
    device_dir = tmp_path / "device"
    run = py_runner.run_job(LocalTarget(device_dir), prepared, tiny_data.subset("test"), "edgetpu")
    assert run.error == prepared.error and _device_files(device_dir) == []


def _libedgetpu_loads() -> bool:
    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_libedgetpu_loads(), reason="this host has an Edge TPU runtime")
def test_a_missing_edgetpu_library_names_the_library_and_the_device(fixed_variants, tiny_data,
                                                                    edgetpu_device, fake_compiler,
                                                                    edgetpu_cache, tmp_path):
    target = LocalTarget(tmp_path / "device", name=edgetpu_device.name)
    run = run_on_device(edgetpu_device, target, fixed_variants["int8"], tiny_data.subset("test"),
                        "edgetpu")
    assert not run.ok and run.logits is None
    assert run.error.startswith("delegate: ")
    assert "libedgetpu.so.1" in run.error and "coral-bench" in run.error


def test_the_boards_cpu_runs_the_fixed_int8_model(fixed_variants, tiny_data, edgetpu_device, tmp_path):
    test = tiny_data.subset("test")
    target = LocalTarget(tmp_path / "device", name=edgetpu_device.name)
    run = run_on_device(edgetpu_device, target, fixed_variants["int8"], test, "reference")
    assert run.ok, run.error
    assert run.logits.shape == (len(test), 4) and run.batch_size == 1 and np.isfinite(run.logits).all()
    assert run.artifact_sha256 == fixed_variants["int8"].sha256  # the CPU gets the uncompiled model
