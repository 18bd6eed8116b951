"""One job on one device of the farm: lease it, run it (``[run] repeat`` times), score and store it.

A job is ``(artifact, delegate)`` taken from its group's :class:`harness.farm.pool.PoolQueue`. How it
ends decides what the queue does next:

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

A ticket has a *device side* (:func:`device_job`: lease the device, run the job ``[run] repeat``
times, return the DeviceRun) and a *host side* (:func:`run_ticket`: the queue, progress, scoring and
storing). The executor decides where the device side runs (``SweepContext.execute``): in this
process (:func:`run_here`, the default) or in the device's actor on another host
(:mod:`harness.farm.ray_executor`); the host side is the same for both.
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
    execute: Callable | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _collector: Any = None
    _pending: list = dataclasses.field(default_factory=list)

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
    """Run ``ticket``'s job on ``dev`` and tell ``queue`` how it ended (module docstring).

    Raises the device error on a device of its own (not pooled)."""
    art, delegate = ticket.job
    group, name = dev.spec.group, dev.spec.name
    where = f"{art.variant} on {group}/{delegate}" + (f" (device {name})" if pooled else "")
    extra = {"device": device_record(dev), "attempts": list(ticket.attempts)} if pooled else {}
    ctx.progress.start(name, f"{art.variant}/{delegate}", len(ctx.test))
    try:
        run = (ctx.execute or run_here)(ctx, dev, ticket.job)
    except JobFailed as err:  # refused or unpreparable: nothing ran on the device
        _store_failure(ctx, (art.variant, group, delegate), str(err), err.stage.value, extra, where)
        queue.done(name)
        ctx.progress.finish(name, "failed")
        return
    except Exception as err:
        if not device_reason(err):  # its worker stops: drained, so that the pool's error names it
            queue.done(name)
            queue.drain(name, f"stopped by {type(err).__name__}: {err}")
            ctx.progress.finish(name, "failed")
            raise
        _device_failed(ctx, dev, queue, ticket, err, pooled, where, extra)
        return
    run = dataclasses.replace(run, target=group)
    queue.done(name)  # the device is free: it takes its next job while the host scores this one
    ctx.progress.finish(name, "ok" if run.ok else "failed")
    ctx.collect(_store_run, ctx, run, extra, where, len(ticket.attempts))


def run_here(ctx: SweepContext, dev, job):
    """The local executor: the device side of ``job`` in this process, progress into the farm's."""
    name = dev.spec.name

    def progress(done: int, total: int) -> None:
        ctx.progress.samples(name, done, total)

    return device_job(dev, job, ctx.test, ctx.exp.run, echo=ctx.echo, progress=progress,
                      lease_broken=lambda key, holder: ctx.progress.lease_broken(key, holder))


def device_job(dev, job, test, options, *, echo: Callable[[str], None], progress=None,
               lease_broken: Callable[[str, Any], None] = lambda key, why: None):
    """The device side of a ticket, wherever the device is reached: lease the device (no other
    qskew process drives it meanwhile), run ``job`` = (artifact, delegate) with the experiment's
    run options (``[run]``: ``options``), ``repeat`` times; the DeviceRun. Raises what the run
    raises (JobFailed, TargetError, ...): the host side (:func:`run_ticket`) decides what follows."""
    art, delegate = job
    with lease(lease_key(dev.spec), echo) as holder:
        if holder.get("broke"):
            lease_broken(holder["key"], holder["broke"])
        return _run_repeated(options, dev, art, delegate, test, echo, progress)


def _store_run(ctx: SweepContext, run, extra: Mapping[str, Any], where: str, attempts: int) -> None:
    """Score a job the device finished and store it (on the collector thread)."""
    score = score_job(run, ctx.ref, ctx.test) if run.ok else None  # outside the lock: the writer is shared
    with ctx.lock:
        if score is not None:
            ctx.writer.add_run(run, score, **extra)
            ctx.echo(f"  {where}: {run.runtime} {run.runtime_version}, delegate applied: "
                     f"{run.delegate_applied}, batch {run.batch_size}"
                     + (f", after {attempts} failed attempt(s)" if attempts else ""))
        else:
            ctx.writer.add_failure(run.variant, run.target, run.delegate, run.error,
                                   stage=failure_stage(run).value, **extra)
            ctx.echo(f"  {where}: FAILED ({run.error})")


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
        art, delegate = ticket.job
        _store_failure(ctx, (art.variant, dev.spec.group, delegate),
                       f"device: {err} (out of retries: {len(ticket.attempts)} attempts)",
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


def _run_repeated(options, dev, art, delegate, test, echo, progress=None):
    """Run the job ``[run] repeat`` times; the first run's logits are the job's, the others
    measure the device's run-to-run noise (DeviceRun.repeats). A repeat that fails is noted in
    the noise, not fatal; the first run failing is the job's failure."""
    name = dev.spec.name

    def counted(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        job_logger(log, name, f"{art.variant}/{delegate}").info("%d/%d samples", done, total)

    def once():
        return runners.run_on_device(dev.spec, dev.target, art, test, delegate,
                                     num_threads=options.num_threads, batch_size=options.batch_size,
                                     runtime=options.runtime, progress=counted, echo=echo,
                                     allow_unproven=options.allow_unproven,
                                     allow_partial=options.allow_partial)

    first = once()
    if options.repeat <= 1 or not first.ok:
        return first
    runs = [first] + [once() for _ in range(options.repeat - 1)]
    noise = repeat_noise(runs)
    echo(f"  {art.variant} on {name}/{delegate}: {noise.runs} runs, max |Δlogit| between "
         f"runs {noise.max_abs_logit_diff:.3g}, latency spread {_pct(noise.latency_rel_spread)}")
    return dataclasses.replace(first, repeats=noise)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"
