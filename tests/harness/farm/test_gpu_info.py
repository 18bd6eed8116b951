"""harness/farm/gpu_info.py and the GPU line of check_device: a device's GPU adapter and driver from
vulkaninfo on the device, else a GPU job's log, else "unknown" -- never a guess."""

from __future__ import annotations

import sys

from harness.farm import gpu_info
from harness.farm.inventory import DeviceSpec
from harness.farm.probe import check_device, probe_artifact
from harness.records import ExecutionPlan
from support.vulkan import use_swiftshader

TWO_GPUS = """\
Devices:
========
GPU0:
\tapiVersion         = 1.3.0
\tdriverVersion      = 5.0.0
\tdeviceType         = PHYSICAL_DEVICE_TYPE_CPU
\tdeviceName         = SwiftShader Device (Subzero)
\tdriverName         = SwiftShader driver
\tdriverInfo         =
GPU1:
\tdeviceType         = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
\tdeviceName         = NVIDIA GeForce RTX 3060
\tdriverName         = NVIDIA
\tdriverInfo         = 550.54.14
\tdriverVersion      = 2308.13.0
"""


def test_vulkaninfo_summary_gives_every_adapter_and_its_driver():
    assert gpu_info.parse_vulkaninfo(TWO_GPUS) == [
        {"adapter": "SwiftShader Device (Subzero) (PHYSICAL_DEVICE_TYPE_CPU)", "driver": "SwiftShader driver 5.0.0"},
        {"adapter": "NVIDIA GeForce RTX 3060 (PHYSICAL_DEVICE_TYPE_DISCRETE_GPU)",
         "driver": "NVIDIA 550.54.14 2308.13.0"}]
    assert gpu_info.parse_vulkaninfo("ERROR: [Loader Message] vkCreateInstance failed") == []


def test_a_gpu_jobs_log_names_the_adapter_but_not_the_driver():
    plan = ExecutionPlan.from_json({"runtime_report": {"adapter": "Mali-G78", "backend": "Vulkan",
                                                       "adapter_type": "unknown"}})
    assert gpu_info.from_gpu_job(plan) == {"adapter": "Mali-G78 (Vulkan)", "driver": "unknown",
                                           "source": "accelerator log"}
    assert gpu_info.from_gpu_job(ExecutionPlan.from_json({"runtime_report": {"adapter": "unknown"}})) is None
    assert gpu_info.from_gpu_job(ExecutionPlan()) is None and gpu_info.from_gpu_job(None) is None


def spec(tmp_path, **kw):
    return DeviceSpec("here", "local", python=sys.executable, workdir=str(tmp_path / "dev"), **kw)


def test_check_device_reads_the_adapter_with_vulkaninfo_on_the_device(tmp_path, monkeypatch):
    use_swiftshader(monkeypatch, tmp_path)
    check = check_device(spec(tmp_path, delegates=("xnnpack",)), probe_artifact())
    assert check.gpu == {"adapter": "SwiftShader Device (Subzero) (PHYSICAL_DEVICE_TYPE_CPU)",
                         "driver": "SwiftShader driver 5.0.0", "source": "vulkaninfo"}


def test_without_vulkaninfo_a_tiny_gpu_job_names_the_adapter(tmp_path, monkeypatch):
    use_swiftshader(monkeypatch, tmp_path)
    monkeypatch.setattr(gpu_info, "VULKANINFO", ("qskew-no-such-vulkaninfo", "--summary"))
    check = check_device(spec(tmp_path, delegates=("xnnpack",)), probe_artifact())
    assert check.gpu == {"adapter": "SwiftShader Device (Subzero) (Vulkan, CPU / Software)",
                         "driver": "unknown", "source": "accelerator log"}
    listed = check_device(spec(tmp_path, delegates=("gpu",)), probe_artifact())  # its own gpu job tells
    assert listed.delegates == {"gpu": "ok"} and listed.gpu["source"] == "accelerator log"


def test_where_nothing_tells_the_gpu_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-such-icd.json"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    check = check_device(spec(tmp_path, delegates=("xnnpack",)), probe_artifact())
    assert check.gpu == {"adapter": "unknown", "driver": "unknown", "source": ""}
    assert check.delegates == {"xnnpack": "ok"}
