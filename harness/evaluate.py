"""The pipeline as a table of contents: dataset + model -> variants -> device jobs -> run directory.

``evaluate`` only sequences the stages; each stage is a function of its own module and is tested
there. Everything a job produces is written to the run directory as soon as the job ends (by
``results.RunWriter``), so a failure later in the sweep loses nothing, and rerunning into the same
run directory skips the jobs that already finished.
"""

from __future__ import annotations

import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.config import Experiment
from harness.errors import ConfigError
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
    targets = _open_targets(exp)
    try:
        writer.write_manifest(_manifest(exp, dataset, source, calibration, artifacts, targets))
        writer.add_reference(ref, test)
        _run_jobs(exp, artifacts, targets, test, ref, writer, progress, echo)
    finally:
        for target in targets:
            target.close()
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


def _open_targets(exp: Experiment) -> list:
    from harness.paths import cache_dir
    from harness.targets.local import LocalTarget

    targets = []
    for name in exp.run.targets:
        if name != "local":  # config.validate already refuses others; keep the check where targets are built
            raise ConfigError(f"unknown target {name!r}")
        targets.append(LocalTarget(cache_dir("local-device"), python=sys.executable, name="local"))
    return targets


def _run_jobs(exp, artifacts, targets, test, ref, writer, progress: bool, echo) -> None:
    """Every artifact x target x delegate, skipping jobs the run directory already holds."""
    from tqdm import tqdm

    from harness.on_device import run_job

    done = writer.completed_jobs()
    jobs = [(t, a, d) for t in targets for a in artifacts for d in exp.run.delegates]
    bar = tqdm(jobs, desc="jobs", unit="job", disable=not progress, leave=False)
    for target, art, delegate in bar:
        key = (art.variant, target.name, delegate)
        if key in done:
            echo(f"  {art.variant} on {target.name}/{delegate}: already in the run directory, skipped")
            continue
        bar.set_postfix_str(f"{art.variant}/{delegate}")
        if not art.ok:
            writer.add_failure(art.variant, target.name, delegate, art.error, stage="convert")
            continue
        run = run_job(target, art, test, delegate, num_threads=exp.run.num_threads,
                      batch_size=exp.run.batch_size, runtime=exp.run.runtime)
        if run.ok:
            writer.add_run(run, ref, test)
            echo(f"  {art.variant} on {target.name}/{delegate}: {run.runtime} {run.runtime_version}, "
                 f"delegate applied: {run.delegate_applied}, batch {run.batch_size}")
        else:
            writer.add_failure(art.variant, target.name, delegate, run.error, stage="run")
            echo(f"  {art.variant} on {target.name}/{delegate}: FAILED ({run.error})")


def _manifest(exp, dataset, source, calibration, artifacts, targets) -> dict:
    return {
        "config": exp.to_json(),
        "versions": _versions(),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256(), "description": dataset.description,
                    "num_classes": dataset.num_classes, "preprocess": dataset.preprocess.to_json(),
                    "group_counts": {s: dataset.subset(s).group_counts() for s in ("train", "test")}},
        "model": dict(source.description),
        "calibration": calibration.info.to_json() if calibration is not None else None,
        "variants": [a.to_json() for a in artifacts],
        "targets": {t.name: dict(t.properties()) for t in targets},
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
