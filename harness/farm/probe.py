"""What a device really offers: reachability, ABI, OS, Python, runtime, free space, delegates that
load, and its GPU adapter and driver where something on the device says (``gpu_info``: vulkaninfo,
else the log of a tiny GPU probe job; "unknown" otherwise).

``qskew devices check`` calls :func:`check_device` for every device of the inventory. Delegates are
not taken on trust: each one runs a real two-sample job of a tiny FP32 model through the same
``on_device.run_job`` path a sweep takes, and counts as loading only if the runner reports it
applied ("none" means the runtime ran everything on its own kernels).

>>> check = check_device(load_inventory(None).get("local"))   # doctest: +SKIP
>>> check.delegates["xnnpack"]                               # doctest: +SKIP
'ok'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from device_runner.protocol import FIXED_BATCH_DELEGATES
from harness.errors import JobFailed, QskewError
from harness.farm import gpu_info
from harness.farm.inventory import DeviceSpec
from harness.records import ExecutionPlan, GroupedDataset, ModelArtifact

log = logging.getLogger(__name__)
DEFAULT_DELEGATES = ("xnnpack", "reference", "builtin")  # what every TFLite runtime can try
PROBE_SAMPLES = 2          # enough to exercise batching; the point is loading, not accuracy
GPU_PROBE_DELEGATE = "gpu-fp32"  # the job whose log names the adapter when vulkaninfo says nothing
DF_TIMEOUT_S = 20.0
# A board (reach = "board") is qemu-user running ARM programs: it has no GPU, and a GPU probe job
# there only starts Python and LiteRT under qemu (~20 s) to learn that.
BOARD_GPU = {"adapter": "none", "driver": "none", "source": "board: qemu-user emulates ARM CPUs only"}


@dataclass(frozen=True)
class DeviceCheck:
    """The outcome of checking one device; ``error`` is set when it could not be reached at all."""

    name: str
    reach: str
    reachable: bool
    properties: Mapping[str, Any] = field(default_factory=dict)
    runtime: str = ""
    free_bytes: int | None = None
    delegates: Mapping[str, str] = field(default_factory=dict)  # delegate -> "ok" or why not
    error: str = ""
    gpu: Mapping[str, str] = field(default_factory=gpu_info.unknown)  # adapter, driver, source

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "reach": self.reach, "reachable": self.reachable,
                "properties": dict(self.properties), "runtime": self.runtime,
                "free_bytes": self.free_bytes, "delegates": dict(self.delegates), "error": self.error,
                "gpu": dict(self.gpu)}


def check_device(spec: DeviceSpec, probe: ModelArtifact | None = None) -> DeviceCheck:
    """Connect to ``spec``'s device and try each delegate it offers (or the default three)."""
    from harness.farm.connect import open_target

    target = None
    try:  # ADB targets connect on first use: the first question is the reachability test
        target = open_target(spec)
        props = dict(target.properties())
    except QskewError as err:
        if target is not None:
            target.close()
        return DeviceCheck(spec.name, spec.reach, reachable=False, error=str(err))
    try:
        free = free_bytes(target)
        probe = probe or probe_artifact()
        delegates, runtime, plans = {}, "", []
        for delegate in spec.delegates or DEFAULT_DELEGATES:
            outcome, rt, plan = _try_delegate(spec, target, _probe_for(spec, delegate, probe), delegate)
            delegates[delegate] = outcome
            runtime = runtime or rt
            plans += [plan] if delegate in FIXED_BATCH_DELEGATES else []
        gpu = _gpu(spec, target, plans)
        return DeviceCheck(spec.name, spec.reach, True, props, runtime, free, delegates, gpu=gpu)
    except QskewError as err:
        return DeviceCheck(spec.name, spec.reach, reachable=True, error=str(err))
    finally:
        target.close()


def free_bytes(target) -> int | None:
    """Free space in the target's work folder from ``df -k`` (None if df is missing or unreadable)."""
    target.mkdirs(target.workdir)
    result = target.run(["df", "-k", target.workdir], timeout_s=DF_TIMEOUT_S)
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or len(lines) < 2:
        return None
    try:  # "Filesystem 1K-blocks Used Available Use% Mounted-on"; a long name may wrap the line
        return int(lines[-1][-3]) * 1024
    except (ValueError, IndexError):
        return None


def _probe_for(spec: DeviceSpec, delegate: str, probe: ModelArtifact) -> ModelArtifact:
    """The probe model a delegate takes: full-integer for an Edge TPU, a fixed batch for the
    CompiledModel delegates (LiteRT's GPU needs static shapes), else ``probe``."""
    if delegate.split(":", 1)[0] == "edgetpu" or spec.profile == "edgetpu":
        return probe_artifact(full_integer=True)
    return probe_artifact(fixed_batch=True) if delegate in FIXED_BATCH_DELEGATES else probe


def _gpu(spec: DeviceSpec, target, plans: list) -> dict[str, str]:
    """The GPU adapter and driver: vulkaninfo on the device, else the log of the GPU jobs already
    run, else (python runner) a tiny GPU probe job's log; "unknown" where nothing says; "none" on
    a board (:data:`BOARD_GPU`)."""
    if spec.reach == "board":
        return dict(BOARD_GPU)
    found = gpu_info.from_vulkaninfo(target)
    for plan in plans:
        found = found or gpu_info.from_gpu_job(plan)
    if found is None and not plans and spec.runner == "python" and spec.profile != "edgetpu":
        _, _, plan = _try_delegate(spec, target, probe_artifact(fixed_batch=True), GPU_PROBE_DELEGATE)
        found = gpu_info.from_gpu_job(plan)
    return found or gpu_info.unknown()


def _try_delegate(spec: DeviceSpec, target, probe: ModelArtifact,
                  delegate: str) -> tuple[str, str, ExecutionPlan | None]:
    """(outcome, runtime, the job's execution plan) of a probe job on ``delegate``."""
    from harness.farm.runners import run_on_device

    try:
        run = run_on_device(spec, target, probe, probe_dataset(), delegate, num_threads=1,
                            batch_size=PROBE_SAMPLES)
    except JobFailed as err:  # the device's profile refused the probe, or it could not be prepared
        return f"fails: {err}", "", None
    runtime = f"{run.runtime} {run.runtime_version}".strip()
    plan = run.execution_plan
    if not run.ok:
        return f"fails: {run.error}", runtime, plan
    if delegate in ("xnnpack",) or delegate.startswith("external:"):
        if run.delegate_applied in ("", "none"):
            return "not applied (the runtime ran every op on its own kernels)", runtime, plan
    return "ok", runtime, plan


def probe_dataset() -> GroupedDataset:
    """Two fixed samples for the probe model (4 features, 3 classes)."""
    x = np.arange(PROBE_SAMPLES * 4, dtype=np.float32).reshape(PROBE_SAMPLES, 4) / 8.0
    return GroupedDataset(name="qskew-probe", ids=np.array([f"p{i}" for i in range(PROBE_SAMPLES)]),
                          x=x, y=np.zeros(PROBE_SAMPLES, dtype=np.int64),
                          group=np.array(["all"] * PROBE_SAMPLES), split=np.array(["test"] * PROBE_SAMPLES),
                          num_classes=3, description="probe inputs of qskew devices check")


def probe_artifact(full_integer: bool = False, fixed_batch: bool = False) -> ModelArtifact:
    """A tiny model (Dense 4 -> 3), converted once with the real converter and cached: FP32 with a
    dynamic batch, or with the batch fixed at PROBE_SAMPLES (``fixed_batch``: LiteRT's GPU), or
    (``full_integer``) int8 in and out with the batch fixed at 1, the only kind an Edge TPU accepts."""
    from harness.paths import cache_dir
    from harness.quantize.convert import artifact_of

    name = ("probe-dense-4x3-int8-b1.tflite" if full_integer else
            f"probe-dense-4x3-b{PROBE_SAMPLES}.tflite" if fixed_batch else "probe-dense-4x3.tflite")
    path = cache_dir("probe") / name
    if not path.is_file():
        _build_probe(path, full_integer, fixed_batch)
    return artifact_of(path, "probe", {"probe": True, "full_integer": full_integer, "fixed_batch": fixed_batch},
                       None, 1 if full_integer else PROBE_SAMPLES)


def _build_probe(path: Path, full_integer: bool, fixed_batch: bool = False) -> None:
    """Build the probe model and convert it through harness.quantize (the one converter seam)."""
    import keras

    from harness.fsutil import atomic_write_bytes
    from harness.quantize.calibration import Calibration
    from harness.quantize.options import QuantizeOptions
    from harness.quantize.tflite_converter import run_converter
    from harness.records import CalibrationInfo

    keras.utils.set_random_seed(0)
    batch = 1 if full_integer else (PROBE_SAMPLES if fixed_batch else None)
    model = keras.Sequential([keras.Input((4,), batch_size=batch), keras.layers.Dense(3)])
    calibration = None
    if full_integer:  # the representative dataset: the probe's own samples, one per step
        data = probe_dataset()
        info = CalibrationInfo(size=PROBE_SAMPLES, strategy="random", seed=0, group_shares={"all": 1.0},
                               sha256=data.sha256())
        calibration = Calibration(x_float=data.x, ids=data.ids, info=info)
    data = run_converter(model, "int8" if full_integer else "fp32", calibration, QuantizeOptions())
    atomic_write_bytes(path, data)
