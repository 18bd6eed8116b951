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

TFLITE_FLOAT_VARIANT = "fp32"     # a float .tflite under test runs as the fp32 variant ...
TFLITE_GIVEN_VARIANT = "tflite"   # ... a quantized one under this name (it is no variant qskew builds)
ERRORS_DIR = "convert-errors"     # run-directory folder for converters' whole error texts


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

    facts = source.facts
    dataset = datasets.fit_to_model(dataset, facts.input_shape)  # hf: images to the model's size
    datasets.validate_for_model(dataset, facts.input_shape, facts.num_classes)
    test, train = dataset.subset("test"), dataset.subset("train")
    with rundir.RunWriter(out_dir, resume=True) as writer:  # holds the run directory's lock
        ref = reference_of(source, test, echo)
        calibration, artifacts, static, skipped = variants_of(exp, source, train, progress, echo)
        artifacts = list(with_error_files(out_dir, artifacts)) + list(extra_artifacts)
        notes = model_notes(source, test, ref, skipped, echo)
        devices, unreachable = schedule.open_devices(exp, echo)
        try:
            writer.write_manifest({**_manifest(exp, dataset, source, calibration, artifacts, devices, ref),
                                   "notes": notes, "skipped_variants": skipped,
                                   "plan": schedule.planned_jobs(exp, artifacts, devices, unreachable)})
            ref = stored_if_resumed(writer.add_reference(ref, test), ref)
            schedule.run_sweep(exp, artifacts, devices, test, ref, writer, progress, echo, unreachable,
                               static=static)
        finally:
            for dev in devices:
                dev.target.close()
    return out_dir


def stored_if_resumed(stored, computed):
    """The reference the jobs are scored against: the run directory's (a resume keeps the rows its
    jobs were scored against), with a warning when the one computed now differs from it."""
    import numpy as np

    if stored is not computed and not (np.array_equal(stored.ids, np.asarray(computed.ids).astype(str))
                                       and np.array_equal(stored.values, np.asarray(computed.values))):
        log.warning("the reference computed now differs from the one stored in the run directory; this "
                    "session's jobs are scored against the stored one, as the jobs already in it were")
    return stored


def reference_of(source: ModelSource, test: GroupedDataset, echo: Callable[[str], None] = lambda s: None):
    """The reference outputs of ``source`` on ``test``: from the cache, else computed and stored.

    A Keras model's are its FP32 logits; a .tflite file's are its own outputs on LiteRT's
    reference kernels (FP32 only when the file is a float model). ``outputs`` of the result says
    whether they are logits or probabilities: by the model's last layer or op, else by their values.
    """
    from harness import reference
    from harness.modelio import OUTPUT_PROBABILITIES, values_look_like_probabilities

    facts = source.facts
    if source.tflite is not None:
        from harness.quantize.host_run import reference_kernel_outputs, runtime_label

        ref, cached = reference.cached_logits(
            f"tflite:{facts.sha256}:{runtime_label()}",
            lambda: reference_kernel_outputs(source.tflite, test.preprocess.apply(test.x)), test)
        what = f"the .tflite's outputs on the {runtime_label()}"
    else:
        ref, cached = reference.cached_reference_logits(lambda: source.model, facts.sha256, test)
        what = "FP32 Keras logits"
    echo(f"reference: {what} for {len(test)} test samples"
         f"{' (cached)' if cached else ' (computed, cached for later runs)'}")
    if facts.outputs == OUTPUT_PROBABILITIES or values_look_like_probabilities(ref.values):
        ref = dataclasses.replace(ref, outputs=OUTPUT_PROBABILITIES)
    return ref


def variants_of(exp: Experiment, source: ModelSource, train: GroupedDataset, progress: bool = True,
                echo: Callable[[str], None] = lambda s: None):
    """(calibration, artifacts, fixed-batch copies, skipped variants {name: reason}).

    A Keras model is converted into every variant of ``exp``. A .tflite file is run as it is, as
    one variant (``fp32`` when it is a float model, else ``tflite``); the variants that convert
    the Keras model are skipped, with the reason."""
    from harness.quantize.convert import KnownModel, artifact_of

    if source.tflite is None:
        model = KnownModel(source.facts.fingerprint, lambda: source.model)
        calibration, artifacts = build_variants(exp, model, train, progress, echo)
        return calibration, artifacts, static_variants(exp, model, calibration, artifacts, echo), {}
    name = TFLITE_FLOAT_VARIANT if source.facts.has_fp32_reference else TFLITE_GIVEN_VARIANT
    given = artifact_of(source.tflite, name, {"tool": "given", "source": str(source.tflite)}, None,
                        exp.run.batch_size, sha256=source.facts.sha256)
    reason = f"needs the Keras model (the model under test is the .tflite file {source.tflite})"
    skipped = {v: reason for v in exp.quantize.variants if v != name}
    echo(f"model is a .tflite file: it runs as variant {name!r}"
         + (f"; skipped (they convert a Keras model): {', '.join(skipped)}" if skipped else ""))
    return None, [given], {}, skipped


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


def model_notes(source: ModelSource, test: GroupedDataset, ref, skipped: dict[str, str],
                echo: Callable[[str], None] = lambda s: None) -> list[str]:
    """What a reader of the run's tables must know about its model (manifest ``notes``, printed
    under the tables): outputs scored as probabilities, a reference that is not FP32, skipped
    variants, and a warning when the model and the dataset both rescale the input."""
    from harness.modelio import OUTPUT_PROBABILITIES

    facts, notes = source.facts, []
    if ref.outputs == OUTPUT_PROBABILITIES:
        how = "its last layer is a softmax or sigmoid" if facts.outputs == OUTPUT_PROBABILITIES else \
            "every output row is in [0, 1] and sums to 1"
        notes.append(f"outputs are probabilities ({how}): loss and KL use their logarithm, "
                     "not a softmax of them")
    if facts.tflite and facts.has_fp32_reference:
        notes.append("reference: the float .tflite under test on the host's reference kernels (FP32)")
    elif facts.tflite:
        notes.append("NO FP32 REFERENCE: the model under test is a quantized .tflite; *_ref columns and drops "
                     "compare with its own run on the host's reference kernels, so they show delegate and "
                     "device skew only, not the skew of quantization")
    if skipped:
        notes.append(f"skipped variants {', '.join(skipped)}: {next(iter(skipped.values()))}")
    for note in notes:
        echo(f"note: {note}")
    twice = double_rescaling(facts.input_rescaling, test, ref)
    if twice:
        log.warning("%s", twice.removeprefix("WARNING: "))  # the log's format adds "WARNING: " itself
        notes.append(twice)
    return notes


def double_rescaling(model_rescaling: str, test: GroupedDataset, ref) -> str:
    """A warning when the model rescales its input itself (``model_rescaling``, from
    ``modelio.input_rescaling``) and the dataset's preprocess rescales it too, with the FP32
    accuracy that this produced; "" when only one of them (or neither) rescales."""
    import numpy as np

    pre = test.preprocess
    if not model_rescaling or (pre.scale == 1.0 and pre.offset == 0.0) or not len(test):
        return ""
    accuracy = float(np.mean(np.asarray(ref.values).argmax(axis=1) == test.y))
    return (f"WARNING: input rescaled twice: the model rescales its input itself ({model_rescaling}) and the "
            f"dataset {test.name!r} rescales it too (x * {pre.scale:.6g} + {pre.offset:.6g}); FP32 accuracy "
            f"with both is {accuracy:.1%}. Use one of them (e.g. a dataset preprocess of scale 1, offset 0)")


def with_error_files(out_dir: Path, artifacts: Sequence[ModelArtifact]) -> list[ModelArtifact]:
    """The artifacts, with each converter's whole error text (``error_detail``) written to
    ``out_dir/convert-errors/<variant>.txt`` and that file named in the artifact's short error."""
    from harness.fsutil import atomic_write_text

    out = []
    for art in artifacts:
        if art.error and art.error_detail:
            path = Path(out_dir) / ERRORS_DIR / f"{art.variant}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, art.error_detail + "\n")
            art = dataclasses.replace(art, error=f"{art.error} (whole converter output: {path})")
        out.append(art)
    return out


def quantize_options(exp: Experiment):
    """The QuantizeOptions of ``exp``: the one mapping from [quantize]/[run] to the converter's
    options (``qskew mitigate`` builds its variants with these too, so recipes match)."""
    from harness.quantize.options import QuantizeOptions

    q = exp.quantize
    return QuantizeOptions(calibration_size=q.calibration_size, calibration_strategy=q.calibration_strategy,
                           seed=q.seed, mixed_layers_regex=q.mixed_layers_regex or None,
                           mixed_last_n=q.mixed_last_n, check_batch_size=exp.run.batch_size,
                           fixed_batch=q.fixed_batch)


def _manifest(exp, dataset, source, calibration, artifacts, devices, ref) -> dict:
    return {
        "config": exp.to_json(),
        "versions": _versions(),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256(), "description": dataset.description,
                    "num_classes": dataset.num_classes, "preprocess": dataset.preprocess.to_json(),
                    "group_counts": {s: dataset.subset(s).group_counts() for s in ("train", "test")},
                    "attributes": list(dataset.attributes), "intersections": dataset.intersections},
        "model": {**source.description, "sha256": source.facts.sha256, "outputs": ref.outputs,
                  "form": source.facts.form, "fp32_reference": source.facts.has_fp32_reference},
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
