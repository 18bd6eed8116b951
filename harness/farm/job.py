"""One job on one device of the farm: lease it, run it (``[run] repeat`` times), score and store it.

A ticket's job is a :class:`harness.farm.shards.ShardJob` (artifact, delegate, one shard of the test
set) taken from its group's :class:`harness.farm.pool.PoolQueue`; :func:`run_shard` is its
device-side part (lease, then the runner on the shard's rows, ``[run] repeat`` times), the rest is
host bookkeeping. A finished shard is kept in the run directory at once; the job is scored and
stored when all its shards are in (:mod:`harness.farm.shards`), and a shard failing for a model
reason fails the whole job (its shards not yet run are skipped). How a shard ends decides what
the queue does next:

* finished, or failed for a **model reason** (the profile refused it, the delegate did not load,
  the outputs are bad, the runner reported an error in its result): stored, never retried;
* a :class:`RunnerError` raised (the runner ended without a usable result, or its files could not
  be set up): not retried and not stored; the device stops and is drained naming the error, and
  the job stays missing from the run (sign-off FAILs it; a resume runs it again);
* failed for a **device reason** (:func:`device_reason`: the device vanished, timed out, adb or the
  link failed): in a pool, handed back to the queue to run on another member, up to ``[run]
  retries`` times (each failed attempt is kept in the job's record), then stored as failed; on a
  device of its own, the device stops (nothing else could run the job) and the error is raised
  once the other devices have finished, as before pools existed. A :class:`DeviceLost` (the
  device's host is gone: a Ray node lost) drains the member at once, then retries as above.

The device side (:func:`run_shard`) runs where the executor says (``SweepContext.execute``): in
this process (:func:`run_here`, the default) or in the device's actor on another host
(:mod:`harness.farm.ray_executor`); the host side (:func:`run_ticket`, :func:`settle_ticket`: the
queue, progress, scoring and storing) is the same for both.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.errors import DeviceLost, FailureStage, JobFailed, RunnerError, TargetError, failure_stage
from harness.farm import runners
from harness.farm.leases import lease, lease_key
from harness.farm.pool import PoolQueue, Ticket
from harness.farm.shards import ShardAssembly, ShardJob, ShardResult, combine
from harness.logs import job_logger
from harness.metrics.noise import repeat_noise
from harness.metrics.score import score_job

log = logging.getLogger(__name__)
COLLECTORS = 1  # threads scoring and storing finished jobs: one keeps the run directory in finishing order
# kept in a pooled job's record; ``node``/``hostname``: the Ray node that reached it (Ray executor only)
DEVICE_FACTS = ("model", "manufacturer", "abi", "os_release", "sdk", "python_version", "node", "hostname")


def device_reason(err: BaseException) -> bool:
    """Whether ``err`` is the device's fault (another identical device may well succeed), not the model's."""
    return isinstance(err, TargetError) and not isinstance(err, RunnerError)


@dataclass(frozen=True)
class OpenDevice:
    """A selected inventory entry, its connected target and the facts it reported."""

    spec: Any      # harness.farm.inventory.DeviceSpec
    target: Any    # harness.targets.base.Target
    properties: Mapping[str, Any]


@dataclass
class SweepContext:
    """What every job of one sweep shares: the experiment, data, run directory and farm progress.

    Finished jobs are scored and stored on one *collector* thread (:meth:`collect`), so a device
    goes on to its next job at once instead of waiting for the host; :meth:`flush` waits for them.
    ``execute(ctx, dev, job) -> DeviceRun`` runs a ticket's device side (None: :func:`run_here`).
    """

    exp: Any
    test: Any
    ref: Any
    writer: Any
    progress: Any          # harness.farm.progress.FarmProgress
    echo: Callable[[str], None]
    shards: tuple = ()     # the test set's shards (harness.on_device.shards_of), in order
    execute: Callable | None = None  # where a ticket's device side runs (run_here, or an executor's)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    assembly: ShardAssembly = dataclasses.field(init=False)  # the jobs' finished shards, from ``shards``
    _collector: Any = None
    _pending: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.assembly = ShardAssembly(max(1, len(self.shards)), [sh.start for sh in self.shards],
                                      self.shards[-1].stop if self.shards else 0)

    def collect(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the collector thread, after the jobs collected before it."""
        from concurrent.futures import ThreadPoolExecutor

        with self.lock:
            if self._collector is None:
                self._collector = ThreadPoolExecutor(max_workers=COLLECTORS, thread_name_prefix="qskew-collect")
            self._pending.append(self._collector.submit(fn, *args))

    def flush(self) -> None:
        """Wait for every collected job to be stored; raises the first error storing one raised."""
        if self._collector is None:
            return
        self._collector.shutdown(wait=True)
        self._collector = None
        errors = [f.exception() for f in self._pending if f.exception() is not None]
        self._pending.clear()
        if errors:
            raise errors[0]


def device_record(dev) -> dict[str, Any]:
    """The member that ran a pooled job: inventory name, reach, serial and the facts it reported."""
    props = dev.properties or {}
    facts = {k: props[k] for k in DEVICE_FACTS if props.get(k) not in (None, "")}
    serial = props.get("serialno") or dev.spec.serial or dev.spec.address
    return {"name": dev.spec.name, "reach": dev.spec.reach, **facts, "serial": serial or None}


def run_ticket(ctx: SweepContext, dev, queue: PoolQueue, ticket: Ticket, pooled: bool) -> None:
    """Run ``ticket``'s shard job on ``dev`` and tell ``queue`` how it ended (module docstring).

    Raises the device error on a device of its own (not pooled). The device-side part is
    :func:`run_shard`, the host-side part :func:`settle_ticket` (an executor running the first
    elsewhere hands its outcome to the second)."""
    job: ShardJob = ticket.job
    if not start_ticket(ctx, dev, queue, ticket):
        return
    try:
        run = (ctx.execute or run_here)(ctx, dev, job)
    except Exception as err:
        settle_ticket(ctx, dev, queue, ticket, pooled, error=err)
        return
    settle_ticket(ctx, dev, queue, ticket, pooled, run=run)


def start_ticket(ctx: SweepContext, dev, queue: PoolQueue, ticket: Ticket) -> bool:
    """Whether ``ticket`` is to run on ``dev`` (shows it as the device's job); False (and the queue
    told) when another shard of its job failed already: the job is stored as failed."""
    job: ShardJob = ticket.job
    if ctx.assembly.failed((job.artifact.variant, dev.spec.group, job.delegate)):
        queue.done(dev.spec.name)
        return False
    ctx.progress.start(dev.spec.name, job.label(), len(job.shard))
    return True


def settle_ticket(ctx: SweepContext, dev, queue: PoolQueue, ticket: Ticket, pooled: bool,
                  run=None, error: Exception | None = None) -> None:
    """The host-side end of a ticket that :func:`run_shard` ran on ``dev``: its DeviceRun ``run``
    (kept, and the job stored once all its shards are in) or the ``error`` it raised (stored,
    retried elsewhere or re-raised, as the module docstring says)."""
    job: ShardJob = ticket.job
    art, delegate, group, name = job.artifact, job.delegate, dev.spec.group, dev.spec.name
    key = (art.variant, group, delegate)
    where = f"{art.variant} on {group}/{delegate}" + (f" (device {name})" if pooled else "")
    extra = {"device": device_record(dev), "attempts": list(ticket.attempts)} if pooled else {}
    if isinstance(error, JobFailed):  # refused or unpreparable: nothing ran on the device
        if ctx.assembly.fail(key):
            _store_failure(ctx, key, str(error), error.stage.value, extra, where)
        queue.done(name)
        ctx.progress.finish(name, "failed")
        return
    if error is not None:
        if not device_reason(error):  # its worker stops: drained, so that the pool's error names it
            queue.done(name)
            queue.drain(name, f"stopped by {type(error).__name__}: {error}")
            ctx.progress.finish(name, "failed")
            raise error
        _device_failed(ctx, dev, queue, ticket, error, pooled, where, extra)
        return
    run = dataclasses.replace(run, target=group)
    queue.done(name)  # the device is free: it takes its next job while the host scores this one
    ctx.progress.finish(name, "ok" if run.ok else "failed")
    record = {"index": job.shard.index, "sha256": job.shard.sha256, "n": len(job.shard), "device": name}
    ctx.collect(_store_shard, ctx, key, ShardResult(record, run, extra, job.artifact.sha256), where)


def run_here(ctx: SweepContext, dev, job: ShardJob):
    """The local executor: the device side of ``job`` in this process, progress into the farm's."""
    return run_shard(dev, job, ctx.exp.run, echo=ctx.echo, progress=_progress(ctx, dev.spec.name, job),
                     lease_broken=lambda key, holder: ctx.progress.lease_broken(key, holder))


def run_shard(dev, job: ShardJob, options, *, echo: Callable[[str], None] = lambda s: None,
              progress: Callable[[int, int], None] | None = None,
              lease_broken: Callable[[str, Any], None] | None = None):
    """The device-side part of a ticket: lease ``dev`` and run ``job``'s artifact on its shard's rows
    ``[run] repeat`` times (``options``: the experiment's ``[run]``); returns the shard's DeviceRun
    (target = the device). Needs nothing of the sweep: an executor may call it where the device is.

    Raises as ``harness.farm.runners.run_on_device`` does (JobFailed, TargetError...)."""
    with lease(lease_key(dev.spec), echo) as holder:  # no other qskew process drives it meanwhile
        if holder.get("broke") and lease_broken is not None:
            lease_broken(holder["key"], holder["broke"])
        return _run_repeated(options, dev, job, echo, progress)


def _progress(ctx: SweepContext, name: str, job: ShardJob) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        ctx.progress.samples(name, done, total)
        job_logger(log, name, job.label()).info("%d/%d samples", done, total)
    return progress


def _store_shard(ctx: SweepContext, key, result: ShardResult, where: str) -> None:
    """Keep a finished shard (on the collector thread); store the job once all its shards are in.

    A shard that failed fails its job (stored once); a job of one shard is not staged."""
    run = result.run
    if not run.ok:
        if ctx.assembly.fail(key):
            _store_failure(ctx, key, run.error or "unknown error", failure_stage(run).value, result.extra, where)
        return
    if ctx.assembly.count > 1:  # kept even if another shard failed the job: its rerun skips this one
        with ctx.lock:
            ctx.writer.add_shard(key, result.record, run, result.extra, result.artifact_sha256)
    if ctx.assembly.failed(key):
        return
    parts = ctx.assembly.add(key, result)
    if parts is not None:
        store_job(ctx, parts, where)


def store_job(ctx: SweepContext, parts: list[ShardResult], where: str) -> None:
    """Score a job whose shards are all in and store it (its pooled facts: the first shard's device,
    every shard's failed attempts)."""
    run = combine(parts)
    extra: dict[str, Any] = {}
    if any(p.extra for p in parts):
        extra["device"] = next(p.extra["device"] for p in parts if p.extra)
        extra["attempts"] = [{**a, "shard": p.record["index"]} if len(parts) > 1 else a
                             for p in parts for a in p.extra.get("attempts", ())]
    score = score_job(run, ctx.ref, ctx.test)  # outside the lock: the writer is shared
    attempts = len(extra.get("attempts", ()))
    with ctx.lock:
        ctx.writer.add_run(run, score, **extra, shards=[p.record for p in parts])
        ctx.echo(f"  {where}: {run.runtime} {run.runtime_version}, delegate applied: "
                 f"{run.delegate_applied}, batch {run.batch_size}"
                 + (f", {len(parts)} shards" if len(parts) > 1 else "")
                 + (f", after {attempts} failed attempt(s)" if attempts else ""))


def _device_failed(ctx: SweepContext, dev, queue: PoolQueue, ticket: Ticket, err: Exception, pooled: bool,
                   where: str, extra: Mapping[str, Any]) -> None:
    """A device-reason failure: retry elsewhere in a pool, else stop this device (raising)."""
    name = dev.spec.name
    ctx.progress.finish(name, "device error")
    if isinstance(err, DeviceLost):  # nothing more will run there: no second failure to wait for
        queue.drain(name, str(err))
        ctx.progress.drained(name, str(err))
    if not pooled:
        queue.drain(name, str(err))
        queue.retry(ticket, name, str(err))  # stays queued: missing from the run, rerun on resume
        raise err
    if len(ticket.attempts) >= ctx.exp.run.retries:
        queue.give_up(ticket, name, str(err))
        key = (ticket.job.artifact.variant, dev.spec.group, ticket.job.delegate)
        if ctx.assembly.fail(key):
            _store_failure(ctx, key, f"device: {err} (out of retries: {len(ticket.attempts)} attempts)",
                           FailureStage.RUN.value, {**extra, "attempts": list(ticket.attempts)}, where)
    else:
        ctx.echo(f"  {where}: device error ({err}); retrying on another device of pool {dev.spec.group}")
        ctx.progress.retry(name, where, str(err))
        drained = queue.retry(ticket, name, str(err))
        if drained:
            ctx.progress.drained(name, queue.drained().get(name, "failed twice in a row"))
    job_logger(log, name).warning("%s: device error: %s", where, err)


def _store_failure(ctx: SweepContext, job: tuple[str, str, str], error: str, stage: str,
                   extra: Mapping[str, Any], where: str) -> None:
    with ctx.lock:
        ctx.writer.add_failure(*job, error, stage=stage, **extra)
    ctx.echo(f"  {where}: FAILED ({error})")


def _run_repeated(options, dev, job: ShardJob, echo: Callable[[str], None], progress):
    """Run the shard job ``[run] repeat`` times; the first run's logits are the job's, the others
    measure the device's run-to-run noise (DeviceRun.repeats). A repeat that fails is noted in
    the noise, not fatal; the first run failing is the job's failure."""
    def once():
        return runners.run_on_device(dev.spec, dev.target, job.artifact, job.shard.data, job.delegate,
                                     num_threads=options.num_threads, batch_size=options.batch_size,
                                     runtime=options.runtime, progress=progress, echo=echo,
                                     allow_unproven=options.allow_unproven,
                                     allow_partial=options.allow_partial)

    first = once()
    if options.repeat <= 1 or not first.ok:
        return first
    runs = [first] + [once() for _ in range(options.repeat - 1)]
    noise = repeat_noise(runs)
    echo(f"  {job.label()} on {dev.spec.name}: {noise.runs} runs, max |Δlogit| between "
         f"runs {noise.max_abs_logit_diff:.3g}, latency spread {_pct(noise.latency_rel_spread)}")
    return dataclasses.replace(first, repeats=noise)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"
