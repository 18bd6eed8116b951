"""The pipeline as a table of contents: dataset + model -> variants -> device jobs -> run directory.

``evaluate`` only sequences the stages; each stage is a function of its own module and is tested
there. Everything a job produces is written to the run directory as soon as the job ends (by
``results.RunWriter``), so a failure later in the sweep loses nothing, and rerunning into the same
run directory skips the jobs that already finished.
"""

from __future__ import annotations

import logging
import platform
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.config import Experiment
from harness.errors import QskewError
from harness.records import GroupedDataset, ModelArtifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """The FP32 model under test and where it came from (recorded in the manifest)."""

    model: Any                       # keras.Model
    description: Mapping[str, Any]   # name/path, sha256, cache key, training facts


def evaluate(exp: Experiment, dataset: GroupedDataset, source: ModelSource, out_dir: Path,
             *, progress: bool = True, echo: Callable[[str], None] = lambda s: None,
             extra_artifacts: Sequence[ModelArtifact] = ()) -> Path:
    """Run ``exp`` end to end and return the run directory.

    ``extra_artifacts`` are variants built elsewhere (e.g. by ``qskew mitigate``) that run next to
    the experiment's own variants, under their own variant names.

    >>> evaluate(config.from_dict({}), datasets.load("digits-groups"), source, Path("runs/x"))  # doctest: +SKIP
    """
    from harness import datasets, reference, results
    from harness.modelio import model_input_shape, model_num_classes

    datasets.validate_for_model(dataset, model_input_shape(source.model), model_num_classes(source.model))
    test, train = dataset.subset("test"), dataset.subset("train")
    writer = results.RunWriter(out_dir, resume=True)
    echo(f"reference: FP32 Keras logits for {len(test)} test samples")
    ref = reference.reference_logits(source.model, test)
    calibration, artifacts = build_variants(exp, source.model, train, progress, echo)
    artifacts = list(artifacts) + list(extra_artifacts)
    devices, unreachable = _open_targets(exp, echo)
    try:
        writer.write_manifest(_manifest(exp, dataset, source, calibration, artifacts, devices))
        writer.add_reference(ref, test)
        _run_jobs(exp, artifacts, devices, test, ref, writer, progress, echo, unreachable)
    finally:
        for dev in devices:
            dev.target.close()
    return out_dir


def build_variants(exp: Experiment, model, train: GroupedDataset, progress: bool = True,
                   echo: Callable[[str], None] = lambda s: None):
    """Calibration set (when a variant needs one) and every variant of ``exp``: (calibration, artifacts)."""
    from harness.paths import cache_dir
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions
    from harness.quantize.variants import get_variant

    q = exp.quantize
    calibration = None
    if any(get_variant(v).needs_calibration for v in q.variants):
        calibration = make_calibration(train, size=q.calibration_size, strategy=q.calibration_strategy, seed=q.seed)
    options = QuantizeOptions(calibration_size=q.calibration_size, calibration_strategy=q.calibration_strategy,
                              seed=q.seed, mixed_layers_regex=q.mixed_layers_regex or None,
                              mixed_last_n=q.mixed_last_n, check_batch_size=exp.run.batch_size)
    echo(f"converting {len(q.variants)} variant(s): {', '.join(q.variants)}")
    artifacts = convert_all(model, list(q.variants), calibration, options, cache_dir("variants"), progress=progress)
    for art in artifacts:
        if not art.ok:
            echo(f"  {art.variant}: FAILED ({art.error})")
    return calibration, artifacts


def _open_targets(exp: Experiment, echo: Callable[[str], None]) -> tuple[list[OpenDevice], list]:
    """Select the experiment's devices from the inventory and connect to each.

    Returns (opened devices, [(device name, error)] for devices that could not be reached): one
    offline phone does not stop a farm run; its error is raised once the others have finished.
    """
    from harness.inventory import load_inventory
    from harness.targets.factory import open_target

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

    spec: Any      # harness.inventory.DeviceSpec
    target: Any    # harness.targets.base.Target
    properties: Mapping[str, Any]


def _device_jobs(exp: Experiment, artifacts, dev: OpenDevice, echo) -> list[tuple[ModelArtifact, str]]:
    """This device's jobs: every artifact x every experiment delegate the device offers."""
    delegates = [d for d in exp.run.delegates if dev.spec.offers(d)]
    for d in exp.run.delegates:
        if d not in delegates:
            echo(f"  {dev.spec.name}: does not offer delegate {d} (inventory), skipped")
    return [(a, d) for a in artifacts for d in delegates]


def _run_jobs(exp, artifacts, devices, test, ref, writer, progress: bool, echo, unreachable=()) -> None:
    """Every artifact x device x delegate, devices side by side, one job at a time per device.

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
            _one_job(exp, dev.target, art, delegate, test, ref, writer, done, lock, bar, echo)
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


def _one_job(exp, target, art, delegate, test, ref, writer, done, lock, bar, echo) -> None:
    from harness.on_device import run_job

    key = (art.variant, target.name, delegate)
    if key in done:
        echo(f"  {art.variant} on {target.name}/{delegate}: already in the run directory, skipped")
        return
    if not art.ok:
        with lock:
            writer.add_failure(art.variant, target.name, delegate, art.error, stage="convert")
        return
    def progress(done: int, total: int) -> None:
        with lock:
            bar.set_postfix_str(f"{target.name}: {art.variant}/{delegate} {done}/{total} samples")
        log.info("[%s] %s/%s: %d/%d samples", target.name, art.variant, delegate, done, total)

    run = run_job(target, art, test, delegate, num_threads=exp.run.num_threads,
                  batch_size=exp.run.batch_size, runtime=exp.run.runtime, progress=progress)
    with lock:
        if run.ok:
            writer.add_run(run, ref, test)
            echo(f"  {art.variant} on {target.name}/{delegate}: {run.runtime} {run.runtime_version}, "
                 f"delegate applied: {run.delegate_applied}, batch {run.batch_size}")
        else:
            writer.add_failure(art.variant, target.name, delegate, run.error, stage="run")
            echo(f"  {art.variant} on {target.name}/{delegate}: FAILED ({run.error})")


def _manifest(exp, dataset, source, calibration, artifacts, devices) -> dict:
    return {
        "config": exp.to_json(),
        "versions": _versions(),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256(), "description": dataset.description,
                    "num_classes": dataset.num_classes, "preprocess": dataset.preprocess.to_json(),
                    "group_counts": {s: dataset.subset(s).group_counts() for s in ("train", "test")}},
        "model": dict(source.description),
        "calibration": calibration.info.to_json() if calibration is not None else None,
        "variants": [a.to_json() for a in artifacts],
        "targets": {d.spec.name: {**d.properties, "inventory": d.spec.to_json()} for d in devices},
    }


def _versions() -> dict:
    from importlib import metadata

    import harness
    from device_runner.protocol import PROTOCOL_VERSION

    out = {"qskew": harness.__version__, "protocol": PROTOCOL_VERSION, "python": platform.python_version()}
    for dist in ("tensorflow", "keras", "ai-edge-litert", "ai-edge-quantizer", "numpy", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
