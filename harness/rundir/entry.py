"""One job's summary entry: the ``run`` object of its summary part (layout in :mod:`harness.rundir.layout`).

The writer builds a :class:`SummaryEntry` from the job's :class:`~harness.records.DeviceRun` (and,
for a finished job, its :class:`~harness.metrics.groups.Disparity`) and stores
:meth:`SummaryEntry.to_json`. The reader returns the stored JSON as dicts, for runs of every
schema alike.

Example::

    entry = SummaryEntry.from_run(run, status="ok", disparity=score.summary)
    entry.to_json()["worst_group"]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from harness.fsutil import jsonable
from harness.metrics.disparity import Disparity
from harness.records import DeviceRun
from harness.records.device import JobTransfer, Precision, RepeatNoise, Timings

# the keys of Disparity, null in the entry of a job that has no scores (a failed one)
_NO_DISPARITY = {f.name: None for f in fields(Disparity)}


@dataclass(frozen=True, kw_only=True)
class SummaryEntry:
    """What the run directory records about one job, finished ("ok") or "failed" (at ``stage``).

    The runtime fields are None where the runner did not say; ``precision`` and ``gpu_adapter``
    (runner protocol 1.3) only where it recorded them; ``disparity`` (``harness.metrics.disparity``) only for a finished job;
    ``config_hash`` is the manifest's when the job was stored.
    """

    variant: str
    target: str
    delegate: str
    status: str                         # "ok" or "failed"
    stage: str | None = None            # a FailureStage value for a failed job
    error: str | None = None
    artifact_sha256: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    delegate_applied: str | None = None
    batch_size: int | None = None
    latency_ms_per_sample: float | None = None
    timings: Timings | None = None
    transfer: JobTransfer | None = None
    repeat: RepeatNoise | None = None
    precision: Precision | None = None  # what precision was requested and what the runtime reports
    gpu_adapter: str | None = None      # "<adapter> (<backend>)" as the runtime reports it
    disparity: Disparity | None = None
    config_hash: str | None = None
    device: dict | None = None          # a pooled job: the member that ran it (name, serial, properties)
    attempts: tuple[dict, ...] = ()     # a pooled job: its failed attempts ({"device", "error"}) before this one
    shards: tuple[dict, ...] = ()       # a finished job: which shard ran where ({"index", "sha256", "n", "device"})

    @classmethod
    def from_run(cls, run: DeviceRun, status: str, stage: str | None = None,
                 disparity: Disparity | None = None) -> "SummaryEntry":
        """The entry of ``run``; empty runtime strings and a zero batch size count as unknown."""
        plan = run.execution_plan
        report = plan.runtime_report if plan is not None else None
        return cls(variant=run.variant, target=run.target, delegate=run.delegate, status=status, stage=stage,
                   error=run.error, artifact_sha256=run.artifact_sha256, runtime=run.runtime or None,
                   runtime_version=run.runtime_version or None, delegate_applied=run.delegate_applied or None,
                   batch_size=run.batch_size or None, latency_ms_per_sample=run.latency_ms_per_sample(),
                   timings=run.timings, transfer=run.transfer, repeat=run.repeats,
                   precision=plan.precision if plan is not None else None,
                   gpu_adapter=None if report is None else f"{report.adapter} ({report.backend})",
                   disparity=disparity)

    def to_json(self) -> dict[str, Any]:
        """The stored JSON object: every key in a fixed order, null where it does not apply, except the
        runtime facts (``precision_requested``/``precision_reported``, ``gpu_adapter``), which appear
        only where the runner recorded them, ``device``/``attempts``, only for a pooled job, and
        ``shards``, only for a job the farm ran (test-set shards, in order, and where each ran);
        ``timings`` and ``transfer`` are {} when unknown."""
        entry: dict[str, Any] = {
            "variant": self.variant, "target": self.target, "delegate": self.delegate, "status": self.status,
            "stage": self.stage, "error": self.error, "artifact_sha256": self.artifact_sha256,
            "runtime": self.runtime, "runtime_version": self.runtime_version,
            "delegate_applied": self.delegate_applied, "batch_size": self.batch_size,
            "latency_ms_per_sample": self.latency_ms_per_sample,
            "timings": self.timings.to_json() if self.timings is not None else {},
            "transfer": self.transfer.to_json() if self.transfer is not None else {},
            "repeat": self.repeat.to_json() if self.repeat is not None else None,
        }
        if self.precision is not None:
            entry["precision_requested"] = self.precision.requested
            entry["precision_reported"] = self.precision.reported
        if self.gpu_adapter is not None:
            entry["gpu_adapter"] = self.gpu_adapter
        entry |= self.disparity.to_json() if self.disparity is not None else _NO_DISPARITY
        entry["config_hash"] = self.config_hash
        if self.device is not None:  # pooled jobs only: the target is the pool, this is the device
            entry["device"] = self.device
        if self.attempts:
            entry["attempts"] = list(self.attempts)
        if self.shards:
            entry["shards"] = list(self.shards)
        return jsonable(entry)
