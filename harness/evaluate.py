"""The pipeline as a table of contents: dataset + model -> variants -> device jobs -> run directory.

``evaluate`` only sequences the stages; each stage is a function of its own module and is tested
there (device choice and scheduling: ``harness.farm``). Everything a job produces is written to the run directory as soon as the job ends (by
``rundir.RunWriter``), so a failure later in the sweep loses nothing, and rerunning into the same
run directory skips the jobs that already finished.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from pathlib import Path
from typing import Callable, Sequence

from harness.config import Experiment
from harness.model_source import ModelSource
from harness.records import GroupedDataset, ModelArtifact

log = logging.getLogger(__name__)


def evaluate(exp: Experiment, dataset: GroupedDataset, source: ModelSource, out_dir: Path,
             *, progress: bool = True, echo: Callable[[str], None] = lambda s: None,
             extra_artifacts: Sequence[ModelArtifact] = ()) -> Path:
    """Run ``exp`` end to end and return the run directory.

    ``extra_artifacts`` are variants built elsewhere (e.g. by ``qskew mitigate``) that run next to
    the experiment's own variants, under their own variant names.

    >>> evaluate(config.from_dict({}), datasets.load("digits-groups"), source, Path("runs/x"))  # doctest: +SKIP
    """
    from harness import datasets, rundir
    from harness.farm import schedule
    from harness.quantize.convert import KnownModel

    facts = source.facts
    dataset = datasets.fit_to_model(dataset, facts.input_shape)  # hf: images to the model's size
    datasets.validate_for_model(dataset, facts.input_shape, facts.num_classes)
    test, train = dataset.subset("test"), dataset.subset("train")
    with rundir.RunWriter(out_dir, resume=True) as writer:  # holds the run directory's lock
        ref = reference_of(source, test, echo)
        model = KnownModel(facts.fingerprint, lambda: source.model)
        calibration, artifacts = build_variants(exp, model, train, progress, echo)
        static = static_variants(exp, model, calibration, artifacts, echo)
        artifacts = list(artifacts) + list(extra_artifacts)
        devices, unreachable = schedule.open_devices(exp, echo)
        try:
            writer.write_manifest({**_manifest(exp, dataset, source, calibration, artifacts, devices),
                                   "plan": schedule.planned_jobs(exp, artifacts, devices, unreachable)})
            writer.add_reference(ref, test)
            schedule.run_sweep(exp, artifacts, devices, test, ref, writer, progress, echo, unreachable,
                               static=static)
        finally:
            for dev in devices:
                dev.target.close()
    return out_dir


def reference_of(source: ModelSource, test: GroupedDataset, echo: Callable[[str], None] = lambda s: None):
    """The FP32 reference logits of ``source`` on ``test``: from the cache, else computed and stored."""
    from harness import reference

    ref, cached = reference.cached_reference_logits(lambda: source.model, source.facts.sha256, test)
    echo(f"reference: FP32 Keras logits for {len(test)} test samples"
         f"{' (cached)' if cached else ' (computed, cached for later runs)'}")
    return ref


def build_variants(exp: Experiment, model, train: GroupedDataset, progress: bool = True,
                   echo: Callable[[str], None] = lambda s: None):
    """Calibration set (when a variant needs one) and every variant of ``exp``: (calibration, artifacts)."""
    from harness.paths import cache_dir
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.variants import get_variant

    q = exp.quantize
    calibration = None
    if any(get_variant(v).needs_calibration for v in q.variants):
        calibration = make_calibration(train, size=q.calibration_size, strategy=q.calibration_strategy, seed=q.seed)
    options = quantize_options(exp)
    echo(f"converting {len(q.variants)} variant(s): {', '.join(q.variants)}")
    artifacts = convert_all(model, list(q.variants), calibration, options, cache_dir("variants"), progress=progress)
    for art in artifacts:
        if not art.ok:
            echo(f"  {art.variant}: FAILED ({art.error})")
    return calibration, artifacts


def static_variants(exp: Experiment, model, calibration, artifacts, echo: Callable[[str], None] = lambda s: None
                    ) -> dict[str, ModelArtifact]:
    """Fixed-batch copies (batch = ``[run] batch_size``) of the variants, for the delegates that
    run one (``protocol.FIXED_BATCH_DELEGATES``: LiteRT's GPU needs static shapes, and
    cpu-compiled runs the same file so that it differs from the GPU job only in the device); {}
    when no such delegate runs or the variants are fixed already. Converted like any variant
    (``fixed_batch``), so cached by their recipe."""
    from device_runner.protocol import FIXED_BATCH_DELEGATES
    from harness.paths import cache_dir
    from harness.quantize.convert import convert_all

    if exp.quantize.fixed_batch or not any(d in FIXED_BATCH_DELEGATES for d in exp.run.delegates):
        return {}
    options = dataclasses.replace(quantize_options(exp), fixed_batch=exp.run.batch_size)
    names = [a.variant for a in artifacts if a.ok]
    echo(f"fixed-batch ({exp.run.batch_size}) copies for the CompiledModel jobs: {', '.join(names)}")
    copies = convert_all(model, names, calibration, options, cache_dir("variants"), progress=False)
    for art in copies:
        if not art.ok:
            echo(f"  {art.variant} (batch {exp.run.batch_size}): FAILED ({art.error})")
    return {a.variant: a for a in copies}


def quantize_options(exp: Experiment):
    """The QuantizeOptions of ``exp``: the one mapping from [quantize]/[run] to the converter's
    options (``qskew mitigate`` builds its variants with these too, so recipes match)."""
    from harness.quantize.options import QuantizeOptions

    q = exp.quantize
    return QuantizeOptions(calibration_size=q.calibration_size, calibration_strategy=q.calibration_strategy,
                           seed=q.seed, mixed_layers_regex=q.mixed_layers_regex or None,
                           mixed_last_n=q.mixed_last_n, check_batch_size=exp.run.batch_size,
                           fixed_batch=q.fixed_batch)


def _manifest(exp, dataset, source, calibration, artifacts, devices) -> dict:
    return {
        "config": exp.to_json(),
        "versions": _versions(),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256(), "description": dataset.description,
                    "num_classes": dataset.num_classes, "preprocess": dataset.preprocess.to_json(),
                    "group_counts": {s: dataset.subset(s).group_counts() for s in ("train", "test")},
                    "attributes": list(dataset.attributes), "intersections": dataset.intersections},
        "model": {**source.description, "sha256": source.facts.sha256},
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
