"""Which devices run which jobs, and how: devices side by side, one job at a time on each.

``open_devices`` selects the experiment's devices from the inventory and connects to each (an
unreachable device is reported, not fatal, while another one answers); ``run_sweep`` runs every
artifact x delegate on every device, each device on its own thread, skipping jobs the run directory
already holds. A device that fails stops only its own jobs: the others finish and are saved (the
run directory's writer is shared under a lock), then the first device error is raised, naming it.

>>> devices, unreachable = open_devices(exp, print)                               # doctest: +SKIP
>>> run_sweep(exp, artifacts, devices, test, ref, writer, True, print, unreachable)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from device_runner.protocol import FIXED_BATCH_DELEGATES
from harness.config import Experiment
from harness.errors import FailureStage, JobFailed, QskewError, failure_stage
from harness.farm import runners
from harness.farm.leases import lease, lease_key
from harness.farm.connect import open_target
from harness.farm.inventory import load_inventory
from harness.logs import job_logger
from harness.metrics.noise import repeat_noise
from harness.metrics.score import score_job
from harness.records import ModelArtifact

log = logging.getLogger(__name__)


def open_devices(exp: Experiment, echo: Callable[[str], None]) -> tuple[list[OpenDevice], list]:
    """Select the experiment's devices from the inventory and connect to each.

    Returns (opened devices, [(device name, error)] for devices that could not be reached): one
    offline phone does not stop a farm run; its error is raised once the others have finished.
    """

    specs = load_inventory(exp.run.devices_file or None).select(exp.run.targets)
    opened: list[OpenDevice] = []
    failed: list[tuple[str, QskewError]] = []
    for spec in specs:
        echo(f"device {spec.name}: connecting ({spec.reach})")
        target = None
        try:
            target = open_target(spec)
            opened.append(OpenDevice(spec, target, dict(target.properties())))
        except QskewError as err:
            if target is not None:
                target.close()
            echo(f"device {spec.name}: unreachable ({err})")
            failed.append((spec.name, err))
        except BaseException:
            for dev in opened:
                dev.target.close()
            raise
    if not opened:
        raise failed[0][1]
    return opened, failed


@dataclass(frozen=True)
class OpenDevice:
    """A selected inventory entry, its connected target and the facts it reported."""

    spec: Any      # harness.farm.inventory.DeviceSpec
    target: Any    # harness.targets.base.Target
    properties: Mapping[str, Any]


def planned_jobs(exp: Experiment, artifacts, devices, unreachable=()) -> list[list[str]]:
    """Every job the sweep sets out to run, [variant, device, delegate], for the manifest's plan
    (what ``qskew signoff`` judges): the opened devices' jobs and those of the devices that could
    not be reached (looked up again in the inventory: their delegates are known without them)."""
    specs = [dev.spec for dev in devices]
    missing = {name for name, _ in unreachable}
    if missing:
        specs += [s for s in load_inventory(exp.run.devices_file or None).select(exp.run.targets) if s.name in missing]
    return [[a.variant, spec.name, d] for spec in specs for a in artifacts for d in exp.run.delegates
            if spec.offers(d)]


def _device_jobs(exp: Experiment, artifacts, dev: OpenDevice, echo) -> list[tuple[ModelArtifact, str]]:
    """This device's jobs: every artifact x every experiment delegate the device offers."""
    delegates = [d for d in exp.run.delegates if dev.spec.offers(d)]
    for d in exp.run.delegates:
        if d not in delegates:
            echo(f"  {dev.spec.name}: does not offer delegate {d} (inventory), skipped")
    return [(a, d) for a in artifacts for d in delegates]


def run_sweep(exp: Experiment, artifacts, devices, test, ref, writer, progress: bool, echo,
              unreachable=(), static: Mapping[str, ModelArtifact] | None = None) -> None:
    """Every artifact x device x delegate, devices side by side, one job at a time per device.

    ``static`` maps a variant to its fixed-batch copy: jobs on a delegate that needs static shapes
    (``protocol.FIXED_BATCH_DELEGATES``: LiteRT's GPU, and cpu-compiled so that it runs the same
    file) run that copy under the variant's name.

    Jobs the run directory already holds are skipped. A device that fails stops only its own
    jobs; the others finish and are saved, then the first device error is raised.
    """
    from tqdm import tqdm

    plan = {dev.spec.name: _device_jobs(exp, artifacts, dev, echo) for dev in devices}
    lock = threading.Lock()  # the run directory and the progress bar are shared by the device threads
    bar = tqdm(total=sum(map(len, plan.values())), desc="jobs", unit="job", disable=not progress, leave=False)
    done = writer.completed_jobs()

    def work(dev: OpenDevice) -> None:
        for art, delegate in plan[dev.spec.name]:
            if delegate in FIXED_BATCH_DELEGATES and art.variant in (static or {}):
                art = static[art.variant]
            _one_job(exp, dev, art, delegate, test, ref, writer, done, lock, bar, echo)
            with lock:
                bar.update()

    errors = list(unreachable) + _side_by_side(work, devices)
    bar.close()
    if errors:
        for name, err in errors[1:]:
            echo(f"device {name} also failed: {err}")
        raise errors[0][1]


def _side_by_side(work: Callable[[OpenDevice], None], devices) -> list[tuple[str, BaseException]]:
    """Run ``work`` for every device in its own thread; returns the (device, error) pairs raised."""
    if len(devices) == 1:  # no thread: tracebacks and Ctrl-C stay simple for the common case
        try:
            work(devices[0])
        except QskewError as err:
            return [(devices[0].spec.name, err)]
        return []
    errors = []
    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="qskew-device") as pool:
        futures = {pool.submit(work, dev): dev.spec.name for dev in devices}
        for fut in as_completed(futures):
            if fut.exception() is not None:
                errors.append((futures[fut], fut.exception()))
    return errors


def _run_repeated(exp, dev, art, test, delegate, progress, echo):
    """Run the job ``[run] repeat`` times; the first run's logits are the job's, the others
    measure the device's run-to-run noise (DeviceRun.repeats). A repeat that fails is noted in
    the noise, not fatal; the first run failing is the job's failure."""
    def once():
        return runners.run_on_device(dev.spec, dev.target, art, test, delegate,
                                     num_threads=exp.run.num_threads, batch_size=exp.run.batch_size,
                                     runtime=exp.run.runtime, progress=progress, echo=echo,
                                     allow_unproven=exp.run.allow_unproven,
                                     allow_partial=exp.run.allow_partial)

    first = once()
    if exp.run.repeat <= 1 or not first.ok:
        return first
    runs = [first] + [once() for _ in range(exp.run.repeat - 1)]
    noise = repeat_noise(runs)
    echo(f"  {art.variant} on {dev.spec.name}/{delegate}: {noise.runs} runs, max |Δlogit| between "
         f"runs {noise.max_abs_logit_diff:.3g}, latency spread {_pct(noise.latency_rel_spread)}")
    return dataclasses.replace(first, repeats=noise)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _one_job(exp, dev, art, delegate, test, ref, writer, done, lock, bar, echo) -> None:
    target = dev.target
    key = (art.variant, target.name, delegate)
    if key in done:
        echo(f"  {art.variant} on {target.name}/{delegate}: already in the run directory, skipped")
        return
    if not art.ok:
        with lock:
            writer.add_failure(art.variant, target.name, delegate, art.error, stage=FailureStage.CONVERT.value)
        return
    def progress(done: int, total: int) -> None:
        with lock:
            bar.set_postfix_str(f"{target.name}: {art.variant}/{delegate} {done}/{total} samples")
        job_logger(log, target.name, f"{art.variant}/{delegate}").info("%d/%d samples", done, total)

    try:
        with lease(lease_key(dev.spec), echo):  # no other qskew process drives this device meanwhile
            run = _run_repeated(exp, dev, art, test, delegate, progress, echo)
    except JobFailed as err:  # refused or unpreparable: nothing ran on the device
        with lock:
            writer.add_failure(art.variant, target.name, delegate, str(err), stage=err.stage.value)
        echo(f"  {art.variant} on {target.name}/{delegate}: FAILED ({err})")
        return
    score = score_job(run, ref, test) if run.ok else None  # outside the lock: other devices go on
    with lock:
        if score is not None:
            writer.add_run(run, score)
            echo(f"  {art.variant} on {target.name}/{delegate}: {run.runtime} {run.runtime_version}, "
                 f"delegate applied: {run.delegate_applied}, batch {run.batch_size}")
        else:
            writer.add_failure(art.variant, target.name, delegate, run.error, stage=failure_stage(run).value)
            echo(f"  {art.variant} on {target.name}/{delegate}: FAILED ({run.error})")
