"""How the farm runs a job on a device: the device's profile first, then its runner kind.

A device's inventory entry says how a job runs there: its ``runner`` is looked up in
:mod:`harness.runners.registry` (``python``: qskew's device runner on the device's Python;
``benchmark_model``: TFLite's binary, one invocation per batch). A device ``profile`` (``edgetpu``,
:mod:`harness.farm.profiles`) first decides whether the variant may run there at all -- a refusal is
the job's error (JobFailed), and nothing is pushed -- and may turn the artifact into the one the accelerator
needs (an Edge TPU compiled model).

>>> run = run_on_device(spec, target, artifact, test, "xnnpack", num_threads=2, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from harness.errors import FailureStage, JobFailed
from harness.farm import profiles
from harness.records import DeviceRun, ExecutionPlan, GroupedDataset, ModelArtifact
from harness.runners import registry
from harness.runners.common import nonfinite_problem


def run_on_device(spec, target, artifact: ModelArtifact, test: GroupedDataset, delegate: str, *,
                  num_threads: int = 2, batch_size: int = 64, runtime: str = "auto",
                  progress: Callable[[int, int], None] | None = None,
                  echo: Callable[[str], None] = lambda s: None, allow_unproven: bool = False,
                  allow_partial: bool = False) -> DeviceRun:
    """Run ``artifact`` on every test sample on the device ``spec`` describes (connected as ``target``).

    ``spec`` is the device's :class:`harness.farm.inventory.DeviceSpec`. Raises what the runner
    raises (TargetError when the device or runner fails); JobFailed (stage ``profile``) when the
    device's profile refuses the variant, (stage ``prepare``) when the model it needs cannot be
    made -- nothing is pushed then. A job that fails on the device is a DeviceRun with ``error``.
    ``allow_unproven`` keeps a GPU job the runtime does not prove ran on the GPU, ``allow_partial``
    runs one whose model the GPU takes only in part (both labelled so).
    """
    refusal = profiles.refusal(spec, artifact, delegate)
    if refusal:
        raise JobFailed(f"profile: device {spec.name} ({spec.profile or spec.reach}): {refusal}",
                        FailureStage.PROFILE)
    artifact = profiles.prepare(spec, artifact, echo, delegate=delegate)
    if not artifact.ok:  # e.g. no Edge TPU model could be had: nothing is pushed
        raise JobFailed(f"prepare: {artifact.error}", FailureStage.PREPARE)
    run = registry.get(spec.runner).run(spec, target, artifact, test, delegate, num_threads=num_threads,
                                        batch_size=batch_size, runtime=runtime, progress=progress,
                                        allow_unproven=allow_unproven, allow_partial=allow_partial)
    return _with_compiler_report(_naming_device(_finite(run, test), spec.name), artifact)


def _finite(run: DeviceRun, test: GroupedDataset) -> DeviceRun:
    """A job whose logits hold NaN or inf fails at stage ``outputs`` (whichever runner kind ran it)."""
    problem = nonfinite_problem(run.logits, test) if run.ok else None
    return dataclasses.replace(run, logits=None, error=problem) if problem else run


def _with_compiler_report(run: DeviceRun, artifact: ModelArtifact) -> DeviceRun:
    """An Edge TPU compiler's per-op statuses join the job's execution plan (placement.csv)."""
    report = (artifact.recipe or {}).get("edgetpu")
    if not report or not report.get("ops") or not run.ok:
        return run
    return dataclasses.replace(run, execution_plan=(run.execution_plan or ExecutionPlan()).with_compiler(report["ops"]))


def _naming_device(run: DeviceRun, device: str) -> DeviceRun:
    """A delegate that fails to load is a fact about the device: its error names the device."""
    if run.error and run.error.startswith("delegate:") and f"device {device}" not in run.error:
        return dataclasses.replace(run, error=f"{run.error} (on device {device})")
    return run
