"""Which runner runs a job on a device: the one place that knows runner kinds and device profiles.

A device's inventory entry says how a job runs there: ``runner = "python"`` runs qskew's device
runner on the device's Python (:func:`harness.on_device.run_job`); ``runner = "benchmark_model"``
drives TFLite's ``benchmark_model`` binary, one invocation per batch
(:func:`harness.benchmark_model.run_job`). A device ``profile`` (``edgetpu``) first decides whether
the variant may run there at all -- a refusal is the job's error, and nothing is pushed -- and
may turn the artifact into the one the accelerator needs (an Edge TPU compiled model).

>>> run = run_on_device(spec, target, artifact, test, "xnnpack", num_threads=2, batch_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from harness import on_device
from harness.errors import ConfigError
from harness.records import DeviceRun, GroupedDataset, ModelArtifact


def run_on_device(spec, target, artifact: ModelArtifact, test: GroupedDataset, delegate: str, *,
                  num_threads: int = 2, batch_size: int = 64, runtime: str = "auto",
                  progress: Callable[[int, int], None] | None = None,
                  echo: Callable[[str], None] = lambda s: None) -> DeviceRun:
    """Run ``artifact`` on every test sample on the device ``spec`` describes (connected as ``target``).

    ``spec`` is the device's :class:`harness.farm.inventory.DeviceSpec`. Raises what the runner
    raises (TargetError when the device or runner fails); a variant the device's profile refuses
    comes back as a DeviceRun whose ``error`` says why.
    """
    from harness.farm import profiles

    refusal = profiles.refusal(spec, artifact, delegate)
    if refusal:
        return DeviceRun(variant=artifact.variant, target=target.name, delegate=delegate,
                         artifact_sha256=artifact.sha256, logits=None,
                         error=f"profile: device {spec.name} ({spec.profile}): {refusal}")
    artifact = profiles.prepare(spec, artifact, echo, delegate=delegate)
    if not artifact.ok:  # e.g. no Edge TPU model could be had: nothing is pushed
        return DeviceRun(variant=artifact.variant, target=target.name, delegate=delegate,
                         artifact_sha256=artifact.sha256, logits=None, error=f"prepare: {artifact.error}")
    if spec.runner == "benchmark_model":
        from harness import benchmark_model

        _check_binary(spec)
        run = benchmark_model.run_job(target, artifact, test, delegate, binary=spec.benchmark_model,
                                      num_threads=num_threads, batch_size=batch_size,
                                      progress=progress)
    else:
        run = on_device.run_job(target, artifact, test, delegate, num_threads=num_threads,
                                batch_size=batch_size, runtime=runtime, progress=progress)
    return _with_compiler_report(_naming_device(run, spec.name), artifact)


def _with_compiler_report(run: DeviceRun, artifact: ModelArtifact) -> DeviceRun:
    """An Edge TPU compiler's per-op statuses join the job's execution plan (placement.csv)."""
    report = (artifact.recipe or {}).get("edgetpu")
    if not report or not report.get("ops") or not run.ok:
        return run
    return dataclasses.replace(run, execution_plan={**dict(run.execution_plan or {}), "compiler": report})


def _check_binary(spec) -> None:
    from harness.farm.inventory import STANDIN_BINARY

    if spec.benchmark_model != STANDIN_BINARY and not Path(spec.benchmark_model).is_file():
        raise ConfigError(f"device {spec.name}: benchmark_model binary {spec.benchmark_model} does not "
                          f"exist (download the build for the device's ABI and name it in the inventory)")


def _naming_device(run: DeviceRun, device: str) -> DeviceRun:
    """A delegate that fails to load is a fact about the device: its error names the device."""
    if run.error and run.error.startswith("delegate:") and f"device {device}" not in run.error:
        return dataclasses.replace(run, error=f"{run.error} (on device {device})")
    return run
