"""A job of the farm runs as one device job per shard of the test set; the host puts it back together.

The test set is cut into shards of at most ``[run] shard_samples`` samples
(:func:`harness.on_device.shards_of`), so a queue's unit is a :class:`ShardJob` (variant, delegate,
shard): a pool spreads one variant's shards over its members and a lost device loses at most the
shard it was running. Each finished shard is kept in the run directory (``RunWriter.add_shard``)
and in a :class:`ShardAssembly`; once every shard of a job is in, :func:`combine` makes the job's
one DeviceRun (logits in test-set order; timings, latency and transfer summed over the shards),
which is scored and stored as an unsharded job is. A test set of at most ``shard_samples`` samples
is one shard and its job runs exactly as it did before shards existed.

>>> job = ShardJob(artifact, "xnnpack", shards_of(test, 4096)[0])   # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np

from harness.errors import QskewError
from harness.on_device import Shard
from harness.paths import cache_dir
from harness.records import DeviceRun, ModelArtifact
from harness.records.device import JobTransfer, RepeatNoise, Timings

Job = tuple[str, str, str]  # (variant, target, delegate), as the run directory keys it


@dataclass(frozen=True, eq=False)
class ShardJob:
    """One unit of a group's queue: ``artifact`` with ``delegate`` on one ``shard`` of the test set."""

    artifact: ModelArtifact
    delegate: str
    shard: Shard

    def label(self) -> str:
        """``variant/delegate``, with ``[shard i/n]`` when the test set has several shards."""
        tail = f" [shard {self.shard.index + 1}/{self.shard.count}]" if self.shard.count > 1 else ""
        return f"{self.artifact.variant}/{self.delegate}{tail}"


@dataclass(frozen=True)
class ShardResult:
    """A finished shard: where it ran (``record``: index, sha256, n, device), its run, its pooled
    facts, and the sha256 of the model file its job's queue ran (what a resume checks it against)."""

    record: Mapping[str, Any]
    run: DeviceRun
    extra: Mapping[str, Any]
    artifact_sha256: str | None = None


class ShardAssembly:
    """The finished shards of every job of a sweep, until each job has all ``count`` of them.

    When the test set has several shards, a shard's logits are written at once into its job's
    scratch file (a temporary file under the cache, at the shard's rows) and dropped from memory,
    with its raw outputs (kept in the run directory's staging folder); the complete job's logits
    are that file mapped read-only, so a job of a million samples is never a whole N x K array in
    host memory (``benchmarks/memory.py``). ``starts`` are the shards' first rows.

    Thread-safe: shards come in from the collector thread; :meth:`failed` is asked by device threads.
    """

    def __init__(self, count: int, starts: Sequence[int] = (), rows: int = 0):
        self.count = count
        self.starts, self.rows = list(starts), rows
        self._parts: dict[Job, dict[int, ShardResult]] = {}
        self._files: dict[Job, Any] = {}
        self._failed: set[Job] = set()
        self._lock = threading.Lock()

    def add(self, job: Job, result: ShardResult) -> list[ShardResult] | None:
        """Keep ``result``; the job's shards in test-set order once all are in (then forgotten), else None."""
        with self._lock:
            if self.count > 1 and len(self.starts) == self.count and result.run.logits is not None:
                result = self._spill(job, result)
            parts = self._parts.setdefault(job, {})
            parts[int(result.record["index"])] = result
            if len(parts) < self.count:
                return None
            del self._parts[job]
            ordered = [parts[i] for i in range(self.count)]
            return self._joined(job, ordered) if job in self._files else ordered

    def _spill(self, job: Job, result: ShardResult) -> ShardResult:
        logits = np.ascontiguousarray(result.run.logits, dtype=np.float32)
        folder = cache_dir("scratch")
        try:
            file = self._files.get(job)
            if file is None:
                file = self._files[job] = tempfile.TemporaryFile(dir=folder, prefix="job-logits-")
                file.truncate(self.rows * logits[:1].nbytes)
            _write_at(file.fileno(), logits.tobytes(), self.starts[int(result.record["index"])] * logits[:1].nbytes)
        except OSError as exc:  # e.g. a full disk: the shards finished so far stay staged for a resume
            raise QskewError(f"cannot keep the logits of job {'/'.join(job)} in {folder} ({exc}); a job in "
                             f"progress takes {self.rows * logits[:1].nbytes:,} bytes there "
                             f"({self.rows:,} samples x {logits.shape[1]} outputs x 4)") from exc
        return replace(result, run=replace(result.run, logits=_Spilled(logits.shape), raw=None))

    def _joined(self, job: Job, parts: list[ShardResult]) -> list[ShardResult]:
        """The parts with their logits as read-only views of the job's scratch file, mapped once."""
        file = self._files.pop(job)
        width = parts[0].run.logits.shape[1]
        whole = np.memmap(file, np.float32, mode="r", shape=(self.rows, width))
        file.close()  # the mapping keeps the (already unlinked) file's pages
        ends = self.starts[1:] + [self.rows]
        return [replace(p, run=replace(p.run, logits=whole[a:b])) for p, a, b in zip(parts, self.starts, ends)]

    def have(self, job: Job) -> set[int]:
        """Indexes of the job's shards already in."""
        with self._lock:
            return set(self._parts.get(job, {}))

    def fail(self, job: Job) -> bool:
        """Mark ``job`` failed (one shard failed: the job fails); True the first time only."""
        with self._lock:
            first = job not in self._failed
            self._failed.add(job)
            self._parts.pop(job, None)
            file = self._files.pop(job, None)
            if file is not None:
                file.close()
            return first

    def failed(self, job: Job) -> bool:
        """Whether a shard of ``job`` failed already (its other shards need not run)."""
        with self._lock:
            return job in self._failed

    def close(self) -> None:
        """Close the scratch files of the jobs still incomplete when the sweep ends (a device
        stopped, Ctrl-C): their shards are kept in the run directory for a resume, and the files,
        already unlinked, are gone once closed."""
        with self._lock:
            files, self._files = list(self._files.values()), {}
            self._parts.clear()
        for file in files:
            file.close()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``: pwrite may write less than it is given (at most ~2 GB a call)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"pwrite wrote nothing at offset {offset}")
        view, offset = view[written:], offset + written


def combine(results: Sequence[ShardResult]) -> DeviceRun:
    """One job's DeviceRun from its shards' (in test-set order): logits joined (spilled shards: their
    mapping, no copy) and raw outputs when every shard kept them (a spilled shard's are dropped: the
    run directory stores none; the staging folder keeps each shard's until the job is stored),
    timings, latency and transfer summed, repeat noise merged, the delegate applied and the runtime
    as every shard says (:func:`combine_applied`, :func:`joined`); the rest is the first shard's."""
    runs = [r.run for r in results]
    if len(runs) == 1:
        return runs[0]
    sizes = [len(r.logits) for r in runs]
    raws = [r.raw for r in runs]
    raw = np.concatenate(raws) if all(x is not None for x in raws) and len({x.dtype for x in raws}) == 1 else None
    return replace(runs[0], logits=_join([r.logits for r in runs]), raw=raw,
                   delegate_applied=combine_applied([r.delegate_applied for r in runs]),
                   runtime=joined([r.runtime for r in runs]),
                   runtime_version=joined([r.runtime_version for r in runs]),
                   timings=combine_timings([r.timings for r in runs], sizes),
                   transfer=combine_transfer([r.transfer for r in runs]),
                   repeats=combine_repeats([r.repeats for r in runs], sizes))


def _join(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The parts one after another: the mapping they are consecutive views of (the assembly's
    scratch file, no copy), else a concatenation."""
    whole = parts[0].base
    if isinstance(whole, np.memmap) and all(p.base is whole for p in parts) and sum(map(len, parts)) == len(whole) \
            and all(a.ctypes.data + a.nbytes == b.ctypes.data for a, b in zip(parts, parts[1:])):
        return whole
    return np.concatenate(parts)


class _Spilled:
    """Where a spilled shard's logits were: only their shape is kept until the job is joined."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]


def joined(values: Sequence[Any]) -> Any:
    """The shards' common value, else their distinct values in shard order joined by " + " (shards
    run on several pool members, whose runtimes may differ)."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else " + ".join(str(v or "unknown") for v in distinct)


def combine_applied(labels: Sequence[Any]) -> Any:
    """The job's delegate applied: a shard the runtime did not confirm ("unknown", "gpu (unproven)",
    "gpu (partial)": each shard's GPU proof is its own first batch) makes the job's label that one,
    so that sign-off never counts the job as confirmed; shards confirmed on different delegates give
    them joined (:func:`joined`), which names no requested delegate."""
    weak = [a for a in labels if a in (None, "", "unknown") or str(a).endswith(("unproven)", "(partial)"))]
    return weak[0] if weak else joined(labels)


def combine_timings(timings: Sequence[Timings | None], sizes: Sequence[int]) -> Timings | None:
    """Sums over the shards (per-batch and per-invocation lists joined); latency per sample is the
    shards' invoke time over all their samples, None unless every shard knows it."""
    if all(t is None for t in timings):
        return None
    known = [t or Timings() for t in timings]
    out: dict[str, Any] = {}
    for f in fields(Timings):
        values = [getattr(t, f.name) for t in known]
        if f.name == "latency_ms_per_sample" or all(v is None for v in values):
            continue
        present = [v for v in values if v is not None]
        out[f.name] = sum(present, ()) if isinstance(present[0], tuple) else sum(present)
    latencies = [t.latency_ms_per_sample for t in known]
    if all(v is not None for v in latencies):
        out["latency_ms_per_sample"] = sum(v * n for v, n in zip(latencies, sizes)) / max(1, sum(sizes))
    return Timings(**out)


def combine_transfer(transfers: Sequence[JobTransfer | None]) -> JobTransfer | None:
    """Bytes and seconds summed over the shards, ``pushed`` per kind too."""
    if all(t is None for t in transfers):
        return None
    known = [t or JobTransfer() for t in transfers]
    pushed: dict[str, int] = {}
    for t in known:
        for kind, n in t.pushed.items():
            pushed[kind] = pushed.get(kind, 0) + int(n)
    return JobTransfer(bytes_pushed=sum(t.bytes_pushed for t in known), bytes_pulled=sum(t.bytes_pulled for t in known),
                       push_s=round(sum(t.push_s for t in known), 6), run_s=round(sum(t.run_s for t in known), 6),
                       pull_s=round(sum(t.pull_s for t in known), 6), pushed=pushed)


def combine_repeats(noises: Sequence[RepeatNoise | None], sizes: Sequence[int]) -> RepeatNoise | None:
    """The job's run-to-run noise from its shards': runs that finished on every shard, every failure,
    identical only if every shard was, the largest logit difference, the shards' largest flip rates
    weighted by their samples (the job's own with one repeat; with more, an upper bound of it that a
    small last shard cannot inflate, as their maximum did), and each run's latency over all samples
    (None where a shard lacks it)."""
    if any(n is None for n in noises):
        return None if all(n is None for n in noises) else next(n for n in noises if n is not None)
    runs = min(n.runs for n in noises)
    per_run = []
    for i in range(runs):
        values = [n.latency_ms_per_sample[i] if i < len(n.latency_ms_per_sample) else None for n in noises]
        per_run.append(None if any(v is None for v in values)
                       else sum(v * s for v, s in zip(values, sizes)) / max(1, sum(sizes)))
    known = [v for v in per_run if v is not None]
    median = float(np.median(known)) if known else None
    return RepeatNoise(runs=runs, failed=tuple(f for n in noises for f in n.failed),
                       identical=all(n.identical for n in noises),
                       max_abs_logit_diff=max(n.max_abs_logit_diff for n in noises),
                       flip_rate_max=sum(n.flip_rate_max * s for n, s in zip(noises, sizes)) / max(1, sum(sizes)),
                       latency_ms_per_sample=tuple(per_run),
                       latency_ms_median=median, latency_ms_min=min(known) if known else None,
                       latency_ms_max=max(known) if known else None,
                       latency_rel_spread=(max(known) - min(known)) / median if known and median else None)
