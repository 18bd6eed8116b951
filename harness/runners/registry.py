"""The runner kinds, registered in one place: the farm looks a device's ``runner`` up here.

Each kind is one function with the same signature; it imports its module when a job runs, so the
inventory can name the kinds without loading numpy or a runtime. An unknown kind is a ConfigError
naming the known ones.

>>> get("benchmark_model").name
'benchmark_model'
>>> get("onnx")
Traceback (most recent call last):
...
harness.errors.ConfigError: unknown runner kind 'onnx'; known: python, benchmark_model
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError
from harness.runners import STANDIN_BINARY
from harness.records import DeviceRun, GroupedDataset, ModelArtifact

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunnerKind:
    """A runner kind: its name, a one-line summary, and how it runs a job on a device.

    ``run(spec, target, artifact, test, delegate, num_threads=, batch_size=, runtime=, progress=,
    allow_unproven=, allow_partial=)``;
    ``spec`` is the device's inventory entry (``name``, ``benchmark_model``...).
    """

    name: str
    summary: str
    run: Callable[..., DeviceRun]


def _run_python(spec, target, artifact: ModelArtifact, test: GroupedDataset, delegate: str, *,
                num_threads: int, batch_size: int, runtime: str, progress: Progress | None,
                allow_unproven: bool = False, allow_partial: bool = False) -> DeviceRun:
    from harness.runners import python

    return python.run_job(target, artifact, test, delegate, num_threads=num_threads,
                          batch_size=batch_size, runtime=runtime, progress=progress,
                          allow_unproven=allow_unproven, allow_partial=allow_partial)


def _run_benchmark_model(spec, target, artifact: ModelArtifact, test: GroupedDataset, delegate: str, *,
                         num_threads: int, batch_size: int, runtime: str,
                         progress: Progress | None, allow_unproven: bool = False,
                         allow_partial: bool = False) -> DeviceRun:
    from harness.runners import benchmark_model

    if spec.benchmark_model != STANDIN_BINARY and not Path(spec.benchmark_model).is_file():
        raise ConfigError(f"device {spec.name}: benchmark_model binary {spec.benchmark_model} does not "
                          f"exist (download the build for the device's ABI and name it in the inventory)")
    return benchmark_model.run_job(target, artifact, test, delegate, binary=spec.benchmark_model,
                                   num_threads=num_threads, batch_size=batch_size, progress=progress)


RUNNERS: dict[str, RunnerKind] = {kind.name: kind for kind in (
    RunnerKind("python", "qskew's device runner on the device's Python", _run_python),
    RunnerKind("benchmark_model", "TFLite's benchmark_model binary, one call per batch", _run_benchmark_model),
)}


def get(name: str) -> RunnerKind:
    """The runner kind called ``name`` (ConfigError listing the known kinds if there is none)."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise ConfigError(f"unknown runner kind {name!r}; known: {', '.join(RUNNERS)}") from None
