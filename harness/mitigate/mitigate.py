"""Mitigations built as variants that run next to the plain ones: QAT, and group-aware calibration.

``mitigate`` builds the variants, then calls ``harness.evaluate.evaluate`` with them as
``extra_artifacts``, so they run on the same targets, against the same FP32 reference, next to the
experiment's own variants (``int8`` and ``mixed`` at least), into one run directory:

- ``int8-qat``: the FP32 model fine-tuned with quantization-aware training (tfmot, in a child
  process: ``harness.mitigate.qat``) and exported full-integer with the plain int8's calibration set;
- ``mixed-qat``: the fine-tuned float weights quantized like the plain ``mixed`` variant (int8,
  the same ops at 16-bit activations; ``harness.quantize.mixed``);
- ``fp32-qat``: the fine-tuned float weights unquantized, to tell what fine-tuning alone changed;
- ``int8-balanced-calib``: the FP32 model in int8 calibrated on a group-balanced set, next to the
  plain ``int8`` calibrated with the experiment's strategy (``random`` by default; if that is
  already ``balanced``, the extra variant is ``int8-random-calib``).

Drops are always against the original FP32 model: the "after" rows say what the mitigated variant
costs against the model you started from. Layers kept float during QAT are by default the ones the
plain ``mixed`` variant raises to 16 bits, matched by position: the i-th Keras layer with a kernel
is the i-th weight op (CONV_2D, FULLY_CONNECTED, ...) of the float .tflite.

The QAT outputs are cached under ``<cache>/mitigate/<key>``, the key hashing the model, the data,
the calibration set, the options and the QAT code, so a rerun reuses them.

    >>> m = mitigate(exp, dataset, source, Path("runs/mitigate"), MitigationOptions())  # doctest: +SKIP
    >>> print(format_before_after(before_after(m.run_dir)))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from harness.errors import ConfigError, ConversionError, ModelError, ResultsError
from harness.mitigate import job as jobfiles
from harness.text import tail
from harness.mitigate.job import QatJob, QatResult, builder_ref
from harness.mitigate.options import MitigationOptions
from harness.evaluate import quantize_options
from harness.records import ModelArtifact

if TYPE_CHECKING:
    from harness.config import Experiment
    from harness.evaluate import ModelSource
    from harness.records import GroupedDataset

log = logging.getLogger(__name__)

QAT_INT8 = "int8-qat"
QAT_MIXED = "mixed-qat"
QAT_FLOAT = "fp32-qat"
BASELINES = ("int8", "mixed")          # the plain variants every mitigation is compared with
CACHE_SUBDIR = "mitigate"              # QAT job folders under harness.paths.cache_dir()
KERNEL_WEIGHTS = ("kernel", "depthwise_kernel")  # a layer with one of these maps to a TFLite weight op
TAIL_CHARS = 600                       # the QAT process's output quoted in an error: a traceback's end
# TF/absl start-up chatter and the ^^^ markers under traceback lines: not worth quoting
LOG_NOISE = re.compile(r"^(WARNING: All log messages|[IWEF]\d{4} |\s*[\^~]*\s*$)")
QAT_CODE = ("qat.py", "job.py", "sampling.py", "legacy_config.py")  # their source is in the cache key
TOOL_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization")


@dataclass(frozen=True)
class KeepPlan:
    """Layers kept float during QAT, and the ops ``mixed-qat`` raises (None: the experiment's recipe)."""

    layers: tuple[str, ...]
    mixed_regex: str | None
    how: str


@dataclass(frozen=True)
class Mitigation:
    """What ``mitigate`` did: the run directory, the variants it added, the QAT record."""

    run_dir: Path
    artifacts: tuple[ModelArtifact, ...]
    qat: QatResult | None
    keep: KeepPlan | None
    qat_cached: bool = False


def mitigate(exp: "Experiment", dataset: "GroupedDataset", source: "ModelSource", out_dir: Path,
             options: MitigationOptions = MitigationOptions(), *, progress: bool = True,
             echo: Callable[[str], None] = lambda s: None, build: Callable | None = None) -> Mitigation:
    """Build the mitigated variants and evaluate them next to ``int8``/``mixed`` into ``out_dir``;
    ``build`` is a built-in model's build function (the command layer's), None for a user model."""
    from harness.evaluate import evaluate
    from harness.mitigate import toolkit
    from harness.quantize.calibration import make_calibration

    if options.qat:
        toolkit.require()  # before any conversion: QAT needs the ``mitigate`` extra
    exp = mitigation_experiment(exp, options)
    q = exp.quantize
    train = dataset.subset("train")
    calibration = make_calibration(train, size=q.calibration_size, strategy=q.calibration_strategy, seed=q.seed)
    artifacts: list[ModelArtifact] = []
    qat = keep = None
    cached = False
    if options.qat:
        qat_artifacts, qat, keep, cached = build_qat_variants(exp, dataset, source, calibration, options, echo, build)
        artifacts += qat_artifacts
    if options.calibration_compare:
        artifacts.append(calibration_variant(exp, source.model, train))
    _refuse_stale(Path(out_dir), artifacts)
    evaluate(exp, dataset, source, Path(out_dir), progress=progress, echo=echo, extra_artifacts=artifacts)
    return Mitigation(Path(out_dir), tuple(artifacts), qat, keep, cached)


def mitigation_experiment(exp: "Experiment", options: MitigationOptions) -> "Experiment":
    """``exp`` with the plain variants the mitigations are compared with added to its own."""
    wanted = list(exp.quantize.variants)
    for name in BASELINES[:2 if options.qat else 1]:
        if name not in wanted:
            wanted.append(name)
    return replace(exp, quantize=replace(exp.quantize, variants=tuple(wanted)))


def build_qat_variants(exp, dataset, source, calibration, options: MitigationOptions, echo, build=None):
    """(artifacts int8-qat/mixed-qat/fp32-qat, QatResult, KeepPlan, from cache?) for ``source``."""
    from harness.paths import cache_dir
    from harness.quantize.convert import artifact_of, convert

    qopts = quantize_options(exp)
    variants_cache = cache_dir("variants")
    float_ops = _float_ops(source.model, qopts, variants_cache)
    keep = keep_plan(source.model, float_ops, options, qopts, _label(source))
    echo(f"QAT: {len(keep.layers)} layer(s) kept float ({keep.how}): {', '.join(keep.layers) or '-'}")
    job = qat_job(source, dataset, keep.layers, options, build)
    job_dir, cached = run_qat(job, source, dataset, calibration, options, echo)
    result = QatResult.from_json(jobfiles.read_json(job_dir / jobfiles.RESULT_FILE))
    recipe = _qat_recipe(job, result, job_dir)
    tuned = fine_tuned_model(source.model, job_dir / jobfiles.QAT_WEIGHTS_FILE, job.model_label)
    int8 = artifact_of(job_dir / jobfiles.INT8_FILE, QAT_INT8,
                       {"tool": "tensorflow_model_optimization+tflite_converter", "base_variant": "int8",
                        "qat": recipe}, calibration, qopts.check_batch_size)
    fp32 = convert(tuned, "fp32", None, qopts, variants_cache)
    mixed_opts = replace(qopts, mixed_layers_regex=keep.mixed_regex) if keep.mixed_regex else qopts
    mixed = convert(tuned, "mixed", calibration, mixed_opts, variants_cache)
    renamed = [replace(art, variant=name, recipe={**dict(art.recipe), "weights": "fine-tuned by QAT",
                                                  "qat": recipe})
               for name, art in ((QAT_MIXED, mixed), (QAT_FLOAT, fp32))]
    return [int8] + renamed, result, keep, cached


def keep_plan(model, float_ops, options: MitigationOptions, qopts, label: str) -> KeepPlan:
    """Which Keras layers stay float in QAT, and which ops ``mixed-qat`` raises to 16 bits."""
    from harness.quantize.mixed import WEIGHT_OPS, choose_layers

    kernel_layers = [layer.name for layer in model.layers if _has_kernel(layer)]
    weight_ops = [op for op in float_ops if op.op_name in WEIGHT_OPS]
    aligned = len(kernel_layers) == len(weight_ops)
    if options.keep_layers_regex == "":
        return KeepPlan((), None, "--keep-layers ''")
    if options.keep_layers_regex is None:
        if not aligned:
            log.warning("model %s: %d Keras kernel layers but %d TFLite weight ops; no layer kept float",
                        label, len(kernel_layers), len(weight_ops))
            return KeepPlan((), None, "the mixed recipe could not be matched to Keras layers")
        try:
            chosen = choose_layers(tuple(float_ops), qopts)
        except ConversionError:
            return KeepPlan((), None, "the mixed recipe matches no op")
        layers = tuple(kernel_layers[weight_ops.index(op)] for op in chosen if op in weight_ops)
        return KeepPlan(layers, None, "the layers the mixed variant raises to 16 bits")
    pattern = re.compile(options.keep_layers_regex)
    layers = tuple(layer.name for layer in model.layers if pattern.search(layer.name))
    if not layers:
        names = ", ".join(layer.name for layer in model.layers)
        raise ConfigError(f"--keep-layers {options.keep_layers_regex!r} matches no layer of model "
                          f"{label}; its layers: {names}")
    if not aligned:
        raise ModelError(f"model {label}: {len(kernel_layers)} Keras layers with kernels but "
                         f"{len(weight_ops)} TFLite weight ops, so --keep-layers cannot be matched "
                         "to the ops mixed-qat raises; use the experiment's mixed recipe instead")
    ops = [weight_ops[kernel_layers.index(n)] for n in layers if n in kernel_layers]
    regex = "|".join(f"^{re.escape(op.scope)}$" for op in ops) or None
    return KeepPlan(layers, regex, f"--keep-layers {options.keep_layers_regex!r}")


def qat_job(source: "ModelSource", dataset: "GroupedDataset", kept: tuple[str, ...],
            options: MitigationOptions, build: Callable | None = None) -> QatJob:
    """The job the QAT process runs for ``source`` (ModelError for models it cannot rebuild)."""
    from harness.modelio import model_input_shape

    label = _label(source)
    if build is None and any(type(layer).__name__ == "TFSMLayer" for layer in source.model.layers):
        raise ModelError(f"QAT needs a built-in model or a Keras model that tf_keras can rebuild; "
                         f"model {label} is a SavedModel")
    shape = model_input_shape(source.model)
    builder = builder_ref(build) if build is not None else None
    return QatJob(model_label=label, builder=builder, input_shape=tuple(int(d) for d in shape),
                  num_classes=int(dataset.num_classes), seed=int(source.description.get("seed", 0) or 0),
                  kept_layers=tuple(kept), epochs=options.epochs, batch_size=options.batch_size,
                  learning_rate=float(options.learning_rate), balanced_sampling=options.balanced_sampling,
                  group_weighted_loss=options.group_weighted_loss,
                  preprocess_scale=float(dataset.preprocess.scale),
                  preprocess_offset=float(dataset.preprocess.offset))


def run_qat(job: QatJob, source, dataset, calibration, options: MitigationOptions,
            echo: Callable[[str], None]) -> tuple[Path, bool]:
    """The job folder with the QAT outputs (from the cache when there), and whether it was cached."""
    from harness.paths import cache_dir

    key = _job_key(job, source.model, dataset, calibration)
    job_dir = cache_dir(CACHE_SUBDIR) / key
    if _complete(job_dir):
        echo(f"QAT: reusing {job_dir}")
        return job_dir, True
    _write_job(job_dir, job, source.model, dataset, calibration)
    how = ", ".join(s for s, on in (("group-balanced sampling", job.balanced_sampling),
                                     ("group-weighted loss", job.group_weighted_loss)) if on) or "plain sampling"
    echo(f"QAT: fine-tuning {job.model_label} for {job.epochs} epoch(s) ({how}) in a child process")
    output = _run_child(job_dir, job, options.timeout_s)
    for line in output.splitlines():
        if line.startswith("qat: "):
            echo(f"  {line[5:]}")
    if not _complete(job_dir):
        raise ModelError(f"QAT of model {job.model_label} ended without writing its results in {job_dir}")
    return job_dir, False


def _run_child(job_dir: Path, job: QatJob, timeout_s: float) -> str:
    """Run ``python -m harness.mitigate.qat``; ModelError naming the model and its last lines."""
    from harness.errors import CommandTimeout
    from harness.mitigate.qat import LEGACY_KERAS_ENV
    from harness.targets.process import run_command

    argv = [sys.executable, "-m", "harness.mitigate.qat", str(job_dir / jobfiles.JOB_FILE)]
    env = {LEGACY_KERAS_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": _pythonpath()}
    try:
        result = run_command(argv, timeout_s=timeout_s, env=env)
    except CommandTimeout as exc:
        raise ModelError(f"QAT of model {job.model_label} did not finish in {timeout_s:g} s; "
                         f"last output: {_last_output(exc.output)}") from exc
    if result.returncode != 0:
        raise ModelError(f"QAT of model {job.model_label} failed (exit code {result.returncode}); "
                         f"last output: {_last_output(result.stdout + result.stderr)}")
    return result.stdout


def fine_tuned_model(model, weights_path: Path, label: str):
    """A Keras 3 copy of ``model`` holding the fine-tuned float weights the QAT process wrote."""
    import keras

    clone = keras.models.clone_model(model)
    with np.load(weights_path, allow_pickle=False) as weights:
        for layer in clone.layers:
            keys = [f"{layer.name}/{i}" for i in range(len(layer.weights))]
            if not keys:
                continue
            missing = [k for k in keys if k not in weights.files]
            if missing:
                raise ModelError(f"QAT of model {label} wrote no weights for {', '.join(missing)}")
            layer.set_weights([weights[k] for k in keys])
    return clone


# -- group-aware calibration --------------------------------------------------------------------

def calibration_variant(exp: "Experiment", model, train: "GroupedDataset") -> ModelArtifact:
    """int8 calibrated with the other strategy: balanced (or random, if the experiment's is balanced)."""
    from harness.paths import cache_dir
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert

    q = exp.quantize
    other = "random" if q.calibration_strategy == "balanced" else "balanced"
    calibration = make_calibration(train, size=q.calibration_size, strategy=other, seed=q.seed)
    qopts = replace(quantize_options(exp), calibration_strategy=other)
    art = convert(model, "int8", calibration, qopts, cache_dir("variants"))
    return replace(art, variant=calibration_variant_name(other),
                   recipe={**dict(art.recipe), "calibration_strategy": other})


def calibration_variant_name(strategy: str) -> str:
    return f"int8-{strategy}-calib"


# -- helpers ------------------------------------------------------------------------------------

def _float_ops(model, qopts, variants_cache: Path):
    """The ops of the FP32 model's float .tflite (the same cache entry as its fp32 variant)."""
    from harness.quantize.convert import convert
    from harness.quantize.inspect import list_ops

    art = convert(model, "fp32", None, qopts, variants_cache)
    if not art.ok:
        raise ConversionError("fp32", f"the float model is needed to match layers to ops: {art.error}")
    return list_ops(art.path)


def _has_kernel(layer) -> bool:
    return any(getattr(w, "name", "").split("/")[-1].split(":")[0] in KERNEL_WEIGHTS for w in layer.weights)


def _write_job(job_dir: Path, job: QatJob, model, dataset, calibration) -> None:
    """The job folder's inputs (harness.mitigate.job documents them); result.json is removed."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / jobfiles.RESULT_FILE).unlink(missing_ok=True)
    train = dataset.subset("train")
    np.savez(job_dir / jobfiles.WEIGHTS_FILE, **{f"{layer.name}/{i}": w for layer in model.layers
                                                 for i, w in enumerate(layer.get_weights())})
    if job.builder is None:
        (job_dir / jobfiles.CONFIG_FILE).write_text(model.to_json())
    np.save(job_dir / jobfiles.TRAIN_X_FILE, np.ascontiguousarray(train.x))
    np.save(job_dir / jobfiles.TRAIN_Y_FILE, np.asarray(train.y, dtype=np.int64))
    np.save(job_dir / jobfiles.TRAIN_GROUP_FILE, np.asarray(train.group).astype(str))
    np.save(job_dir / jobfiles.CALIBRATION_FILE, np.asarray(calibration.x_float, dtype=np.float32))
    jobfiles.write_json(job_dir / jobfiles.JOB_FILE, job.to_json())


def _complete(job_dir: Path) -> bool:
    return all((job_dir / name).is_file() for name in
               (jobfiles.RESULT_FILE, jobfiles.INT8_FILE, jobfiles.QAT_WEIGHTS_FILE))


def _job_key(job: QatJob, model, dataset, calibration) -> str:
    from importlib import metadata

    from harness.quantize.cache import model_fingerprint

    here = Path(__file__).parent
    versions = {}
    for name in TOOL_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    payload = {"job": job.to_json(), "model": model_fingerprint(model), "dataset": dataset.sha256(),
               "calibration": calibration.info.sha256, "versions": versions,
               "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in QAT_CODE}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _qat_recipe(job: QatJob, result: QatResult, job_dir: Path) -> dict[str, Any]:
    return {"epochs": job.epochs, "learning_rate": job.learning_rate, "batch_size": job.batch_size,
            "balanced_sampling": job.balanced_sampling, "group_weighted_loss": job.group_weighted_loss,
            "group_weights": result.group_weights, "kept_float_layers": list(result.kept_layers),
            "unsupported_layers": list(result.unsupported_layers),
            "annotated_layers": list(result.annotated_layers), "seed": job.seed,
            "job_key": job_dir.name, "versions": result.versions}


def _refuse_stale(out_dir: Path, artifacts: list[ModelArtifact]) -> None:
    """Resuming into ``out_dir`` must not keep results of other builds under the same names."""
    from harness import rundir

    manifest_path = out_dir / rundir.MANIFEST_FILE
    if not manifest_path.is_file():
        return
    try:
        old = {v.get("variant"): v.get("sha256") for v in json.loads(manifest_path.read_text()).get("variants", [])}
    except (OSError, ValueError, AttributeError) as exc:
        raise ResultsError(f"{manifest_path} is unreadable: {exc}") from exc
    for art in artifacts:
        if art.variant in old and old[art.variant] != art.sha256:
            raise ResultsError(f"{out_dir} already holds a {art.variant!r} built with other options "
                               f"(sha256 {str(old[art.variant])[:12]} != {str(art.sha256)[:12]}); "
                               "use a new --out folder")


def _label(source) -> str:
    desc = dict(source.description)
    return str(desc.get("name") or desc.get("path") or "model")


def _pythonpath() -> str:
    """The folder holding ``harness`` and ``models`` first, so the child imports this checkout."""
    import os

    import harness

    root = str(Path(harness.__file__).resolve().parent.parent)
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


def _last_output(output: str) -> str:
    """The end of the QAT process's output on one line, TF's log lines and caret markers left out."""
    lines = [line.rstrip() for line in (output or "").splitlines() if not LOG_NOISE.match(line)]
    return tail(" | ".join(lines), TAIL_CHARS) or "(no output)"
