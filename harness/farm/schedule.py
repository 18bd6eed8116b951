"""Which devices run which jobs, and how: groups side by side, one job at a time on each device.

``open_devices`` selects the experiment's devices from the inventory and connects to each (an
unreachable device is reported, not fatal, while another one answers); ``run_sweep`` runs every
artifact x delegate once per *group*, skipping jobs the run directory already holds. A group is a
pool (devices with one ``pool`` label: they share a job queue, :mod:`harness.farm.pool`, and their
jobs are stored under the pool's name) or a device of its own (it runs every job). Every device
runs on its own thread (the run directory's writer is shared under a lock). A job runs as one
ticket per shard of the test set (``[run] shard_samples``, :mod:`harness.farm.shards`); a resume
queues only the shards the run directory does not keep yet. A lone device that
fails stops only its own jobs; a pooled job that fails for a device reason runs again on another
member (:mod:`harness.farm.job`); with pool members behind an adb server, members that vanish
are drained at once and matching devices that appear join mid-run (:mod:`harness.farm.hotplug`).
Device errors that left jobs unrun are raised at the end.

Where a job's device side runs is the experiment's ``[run] executor``: ``local`` (this process,
one thread per device) or ``ray`` (:mod:`harness.farm.ray_executor`: one actor per device on the
Ray node that reaches it); queues, retries, scoring and storing stay here either way.

>>> devices, unreachable = open_devices(exp, print)                               # doctest: +SKIP
>>> run_sweep(exp, artifacts, devices, test, ref, writer, True, print, unreachable)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Mapping

from device_runner.protocol import FIXED_BATCH_DELEGATES
from harness.config import Experiment
from harness.errors import FailureStage, QskewError, TargetError
from harness.farm.connect import open_target
from harness.farm.hotplug import HotPlug
from harness.farm.inventory import AUTO_POOL, DeviceSpec, load_inventory
from harness.farm.job import OpenDevice, SweepContext, run_ticket, store_job
from harness.farm.pool import PoolQueue, Ticket
from harness.farm.shards import ShardJob, ShardResult
from harness.farm.progress import FarmProgress
from harness.on_device import shards_of
from harness.records import ModelArtifact

log = logging.getLogger(__name__)


def open_devices(exp: Experiment, echo: Callable[[str], None]) -> tuple[list[OpenDevice], list]:
    """Select the experiment's devices from the inventory and connect to each.

    Returns (opened devices, [(device name, error)] for devices that could not be reached): one
    offline phone does not stop a farm run; its error is raised once the others have finished.
    With ``[run] executor = "ray"`` each device is opened by its actor on the node that reaches it.
    """
    specs = load_inventory(exp.run.devices_file or None).select(exp.run.targets)
    if exp.run.executor == "ray":
        from harness.farm import ray_executor

        actors, failed = ray_executor.open_actors(specs, exp.run.address, echo)
        opened = [OpenDevice(auto_pool(spec, props), target, props) for spec, target, props in actors]
    else:
        opened, failed = _open_here(specs, echo)
    if not opened:
        raise failed[0][1]
    return opened, failed


def _open_here(specs, echo: Callable[[str], None]) -> tuple[list[OpenDevice], list]:
    """Connect to each device from this process: (opened, [(name, error)])."""
    opened: list[OpenDevice] = []
    failed: list[tuple[str, QskewError]] = []
    for spec in specs:
        echo(f"device {spec.name}: connecting ({spec.reach})")
        target = None
        try:
            target = open_target(spec)
            props = dict(target.properties())
            opened.append(OpenDevice(auto_pool(spec, props), target, props))
        except QskewError as err:
            if target is not None:
                target.close()
            echo(f"device {spec.name}: unreachable ({err})")
            failed.append((spec.name, err))
        except BaseException:
            for dev in opened:
                dev.target.close()
            raise
    return opened, failed


def auto_pool(spec, props: Mapping) -> "DeviceSpec":
    """``pool = "auto"``: the device joins the pool of the devices reporting the same model, ABI and
    runtime (runner kind and Python version), named ``auto-<model>-<abi>-<runner>-py<version>``."""
    if spec.pool != AUTO_POOL:
        return spec
    facts = [props.get("model") or "unknown", props.get("abi") or "unknown", spec.runner,
             f"py{props.get('python_version') or 'unknown'}"]
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", "-".join(["auto", *map(str, facts)]))
    return dataclasses.replace(spec, pool=name)


def planned_jobs(exp: Experiment, artifacts, devices, unreachable=()) -> list[list[str]]:
    """Every job the sweep sets out to run, [variant, target, delegate], for the manifest's plan
    (what ``qskew signoff`` judges): the opened devices' jobs and those of the devices that could
    not be reached (looked up again in the inventory: their delegates are known without them). A
    pool's jobs are planned once, under the pool's name: those of the delegates any member offers."""
    specs = [dev.spec for dev in devices]
    missing = {name for name, _ in unreachable}
    if missing:  # (an unreachable pool = "auto" device plans nothing: its pool is not known without it)
        specs += [s for s in load_inventory(exp.run.devices_file or None).select(exp.run.targets)
                  if s.name in missing and s.pool != AUTO_POOL]
    plan: list[list[str]] = []
    for spec in specs:
        for job in ([a.variant, spec.group, d] for a in artifacts for d in exp.run.delegates if spec.offers(d)):
            if job not in plan:
                plan.append(job)
    return plan


def groups_of(devices) -> dict[str, list[OpenDevice]]:
    """The opened devices by group (pool name, or the device's own name), in inventory order."""
    groups: dict[str, list[OpenDevice]] = {}
    for dev in devices:
        groups.setdefault(dev.spec.group, []).append(dev)
    return groups


def _group_queue(exp: Experiment, artifacts, name: str, members, done, static, ctx: SweepContext) -> PoolQueue:
    """The queue of group ``name``: every artifact x delegate a member offers and the run directory
    does not hold yet, one ticket per shard not kept yet; a variant that did not convert is stored
    as failed at once (nothing runs)."""
    tickets = []
    for art in artifacts:
        for delegate in exp.run.delegates:
            offered = [m for m in members if m.spec.offers(delegate)]
            if not offered:
                ctx.echo(f"  {name}: does not offer delegate {delegate} (inventory), skipped")
                continue
            if (art.variant, name, delegate) in done:
                ctx.echo(f"  {art.variant} on {name}/{delegate}: already in the run directory, skipped")
            elif not art.ok:
                with ctx.lock:
                    ctx.writer.add_failure(art.variant, name, delegate, art.error, stage=FailureStage.CONVERT.value)
            else:
                if delegate in FIXED_BATCH_DELEGATES and art.variant in (static or {}):
                    art = static[art.variant]
                tickets += _shard_tickets(ctx, art, name, delegate)
    return PoolQueue(name, tickets, {m.spec.name: accepts(m.spec) for m in members})


def _shard_tickets(ctx: SweepContext, art, group: str, delegate: str) -> list[Ticket]:
    """One ticket per shard of the job that the run directory does not keep yet (a resume picks up
    the shards kept by the run it continues; a job whose shards are all kept is stored at once).
    A kept shard counts only if it ran these inputs (its sha256) with this model file (``art``'s)."""
    key, where = (art.variant, group, delegate), f"{art.variant} on {group}/{delegate}"
    kept: dict = {}
    if len(ctx.shards) > 1:
        kept = {i: st for i, st in ctx.writer.staged_shards(key).items()
                if i < len(ctx.shards) and st.record.get("sha256") == ctx.shards[i].sha256
                and st.artifact_sha256 == art.sha256}
        for staged in kept.values():
            parts = ctx.assembly.add(key, ShardResult(staged.record, staged.run, staged.extra, art.sha256))
            if parts is not None:  # every shard kept: stored now, nothing to run
                ctx.collect(store_job, ctx, parts, where)
                return []
        if kept:
            ctx.echo(f"  {where}: {len(kept)} of {len(ctx.shards)} shards already in the run directory")
    return [Ticket(job=ShardJob(art, delegate, shard)) for shard in ctx.shards if shard.index not in kept]


def accepts(spec) -> Callable[[ShardJob], bool]:
    """Whether the device ``spec`` describes may run a job: it offers the job's delegate."""
    return lambda job: spec.offers(job.delegate)


def run_sweep(exp: Experiment, artifacts, devices, test, ref, writer, progress: bool, echo,
              unreachable=(), static: Mapping[str, ModelArtifact] | None = None) -> None:
    """Every artifact x group x delegate, groups side by side, one job at a time per device.

    ``static`` maps a variant to its fixed-batch copy: jobs on a delegate that needs static shapes
    (``protocol.FIXED_BATCH_DELEGATES``: LiteRT's GPU, and cpu-compiled so that it runs the same
    file) run that copy under the variant's name.

    Jobs the run directory already holds are skipped. A device that fails stops only its own
    jobs (a pool's other members take them over); the others finish and are saved, then the first
    device error that left jobs unrun is raised. ``farm.json`` in the run directory gets the farm's
    summary (:mod:`harness.farm.progress`).
    """
    farm = FarmProgress([dev.spec.name for dev in devices], enabled=progress, echo=echo)
    ctx = SweepContext(exp, test, ref, writer, farm, echo, shards=shards_of(test, exp.run.shard_samples))
    ctx.execute = _executor(exp, ctx)
    done = writer.completed_jobs()
    groups = groups_of(devices)
    queues = {name: _group_queue(exp, artifacts, name, members, done, static, ctx) for name, members in groups.items()}

    def work(dev: OpenDevice) -> None:
        queue, pooled = queues[dev.spec.group], bool(dev.spec.pool)
        while (ticket := queue.take(dev.spec.name)) is not None:
            run_ticket(ctx, dev, queue, ticket, pooled)

    # pools behind an adb server: track-devices (local executor: a newcomer is opened on this host)
    watch = HotPlug.start(groups, queues, farm, work, echo) if ctx.execute is None else None
    errors = list(unreachable)
    try:
        errors += _side_by_side(work, devices, lambda: _drain_all(queues, "the run was interrupted"))
    finally:
        errors += watch.stop() if watch is not None else []  # (joined members drained too on Ctrl-C)
        try:
            ctx.flush()  # every finished job is stored, even when a device error or Ctrl-C ends the sweep
        finally:
            ctx.assembly.close()  # incomplete jobs' scratch files (their shards stay staged for a resume)
    errors += _unrun_pool_jobs(ctx, groups, queues, {name for name, _ in errors})
    farm.close(getattr(writer, "run_dir", None))
    if errors:
        for name, err in errors[1:]:
            echo(f"device {name} also failed: {err}")
        raise errors[0][1]


def _executor(exp: Experiment, ctx: SweepContext):
    """The sweep's ``execute`` for ``[run] executor``: None runs jobs here (harness.farm.job.run_here)."""
    if exp.run.executor != "ray":
        return None
    from harness.farm import ray_executor

    return ray_executor.executor(ctx)


def _unrun_pool_jobs(ctx: SweepContext, groups, queues, failed: set[str]) -> list[tuple[str, BaseException]]:
    """A pool's jobs no member was left to run: those that failed on a member are stored as failed
    (with their attempts); the others stay missing, and the pool's error says which devices drained.
    A lone device drained between jobs (hot-plug) without an error of its own gets one too."""
    errors = []
    for name, queue in queues.items():
        left = queue.orphans()
        if not any(m.spec.pool for m in groups[name]):
            if left and name not in failed:
                why = "; ".join(queue.drained().values())
                errors.append((name, TargetError(f"device {name}: {_jobs(left)} job(s) not run: {why}", name)))
            continue
        for ticket in (t for t in left if t.attempts):
            art, delegate = ticket.job.artifact, ticket.job.delegate
            if not ctx.assembly.fail((art.variant, name, delegate)):
                continue  # another shard of the job stored it as failed already
            with ctx.lock:
                ctx.writer.add_failure(art.variant, name, delegate,
                                       f"device: {ticket.attempts[-1]['error']} (no member of pool {name} "
                                       f"left to retry on)", stage=FailureStage.RUN.value,
                                       attempts=ticket.attempts)
        if left:
            drained = "; ".join(f"{m} ({why})" for m, why in queue.drained().items())
            errors.append((name, TargetError(f"pool {name}: {_jobs(left)} job(s) not finished, every member "
                                             f"was drained: {drained}", name)))
    return errors


def _jobs(tickets) -> int:
    """How many jobs ``tickets`` (one per shard) belong to."""
    return len({(t.job.artifact.variant, t.job.delegate) for t in tickets})


def _drain_all(queues: Mapping[str, PoolQueue], why: str) -> None:
    """Every live member of every queue takes no new job (the jobs running now finish)."""
    for queue in queues.values():
        for member in queue.live():
            queue.drain(member, why)


def _side_by_side(work: Callable[[OpenDevice], None], devices,
                  stop: Callable[[], None] = lambda: None) -> list[tuple[str, BaseException]]:
    """Run ``work`` for every device in its own thread; returns the (device, error) pairs raised.

    Ctrl-C (or any error) in the waiting thread calls ``stop``, so that the workers end after their
    current job: leaving the thread pool waits for them, and without ``stop`` that was every job."""
    if len(devices) == 1:  # no thread: tracebacks and Ctrl-C stay simple for the common case
        try:
            work(devices[0])
        except QskewError as err:
            return [(devices[0].spec.name, err)]
        return []
    errors = []
    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="qskew-device") as pool:
        futures = {pool.submit(work, dev): dev.spec.name for dev in devices}
        try:
            for fut in as_completed(futures):
                if fut.exception() is not None:
                    errors.append((futures[fut], fut.exception()))
        except BaseException:
            stop()
            raise
    return errors
