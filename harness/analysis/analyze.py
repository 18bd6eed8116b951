"""``qskew analyze``: per group, why a run's variants lose what they lose (reads any run directory).

    analyze(RUN_DIR) -> analysis.csv + layers.csv in RUN_DIR (formats in ``harness.rundir.analysis_tables``)

1. :func:`load_inputs`: the FP32 Keras model named by ``manifest["model"]["path"]`` (its
   ``modelio.model_sha256`` must equal the manifest's), the dataset named by the run's config
   (its sha256 must equal the manifest's), the test split, and at most ``max_samples_per_group``
   samples of each group drawn with ``seed``.
2. For the reference and each variant (weights dequantized from its .tflite and put back into a
   copy of the model: ``harness.analysis.dequant``): loss, logit variance, gradient norm, Hessian
   top eigenvalue and trace per group (``harness.analysis.curvature``).
3. For each variant: per-layer, per-group RMSE and SNR of its intermediate tensors against the
   FP32 layers (``harness.analysis.layers``), and the layers ranked by how much more the minority
   loses than the majority (``harness.metrics.layer_skew.skew_table``).

A variant whose file is missing or changed, or whose weights cannot be mapped onto the Keras
layers, gets one analysis.csv row per group with ``error`` set; the others go on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from harness.errors import ArtifactError, DatasetError, ModelError, QskewError
from harness.modelio import OUTPUT_PROBABILITIES
from harness.metrics.layer_skew import minority_majority, skew_table
from harness.rundir import analysis_tables as tables
from harness.text import fit_cell, name_width

if TYPE_CHECKING:
    import pandas as pd

    from harness.records import GroupedDataset
    from harness.rundir import RunData

POWER_ITERATIONS = 20        # power-iteration cap: ~1e-3 relative agreement within it on the demo CNN
PROBES = 30                  # Hutchinson probes: trace standard error ~7 % on the demo CNN (paired across variants)
MAX_SAMPLES_PER_GROUP = 1000  # the demo's groups whole (180, 539) in ~30 s on 2 cores; n is recorded
SEED = 0                     # default seed of the sample draw, start vectors and probes
SKIPPED_BY_DEFAULT = ("fp32",)  # fp32's weights are FP32's: the "reference" rows already cover them


@dataclass(frozen=True)
class AnalyzeOptions:
    """What ``qskew analyze`` computes; ``variants`` None means every variant of the run except fp32."""

    variants: tuple[str, ...] | None = None
    iterations: int = POWER_ITERATIONS
    probes: int = PROBES
    seed: int = SEED
    max_samples_per_group: int = MAX_SAMPLES_PER_GROUP

    def __post_init__(self) -> None:
        from harness.errors import ConfigError

        if self.iterations < 0 or self.probes < 0:
            raise ConfigError("--power-iterations and --probes must be >= 0")
        if self.max_samples_per_group < 1:
            raise ConfigError("--max-samples-per-group must be >= 1")


@dataclass(frozen=True, eq=False)
class RunInputs:
    """What the analysis of one run directory works on (checked against its manifest)."""

    run: "RunData"
    model: Any
    dataset: "GroupedDataset"       # the whole dataset (suggest-mixed calibrates on its train split)
    x: np.ndarray                   # float inputs of the chosen test samples
    y: np.ndarray
    group: np.ndarray
    minority: str                   # the group with the fewest training samples
    majority: str                   # the group with the most


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    analysis: "pd.DataFrame"
    layers: "pd.DataFrame"
    skew: "pd.DataFrame"
    minority: str
    majority: str
    files: tuple[Path, ...] = field(default_factory=tuple)


def analyze(run_dir: Path, options: AnalyzeOptions = AnalyzeOptions(),
            echo: Callable[[str], None] = lambda s: None) -> AnalysisResult:
    """Analyze ``run_dir`` and write analysis.csv and layers.csv into it.

    >>> result = analyze(Path("runs/demo"))  # doctest: +SKIP
    >>> result.skew.head()  # layers where the minority loses most relative to the majority  # doctest: +SKIP
    """
    inputs = load_inputs(Path(run_dir), options.max_samples_per_group, options.seed)
    echo(f"analyzing {len(inputs.y)} test samples ({_counts(inputs.group)}); "
         f"minority {inputs.minority!r}, majority {inputs.majority!r}")
    variants = variant_files(inputs.run.manifest, options.variants)
    analysis = curvature_table(inputs, variants, options, echo)
    layers = layer_table(inputs, variants, echo)
    files = (tables.write_analysis(run_dir, analysis), tables.write_layers(run_dir, layers))
    return AnalysisResult(analysis=analysis, layers=layers,
                          skew=skew_table(layers, inputs.minority, inputs.majority),
                          minority=inputs.minority, majority=inputs.majority, files=files)


# -- inputs ------------------------------------------------------------------------------------

def load_inputs(run_dir: Path, max_samples_per_group: int = MAX_SAMPLES_PER_GROUP, seed: int = SEED) -> RunInputs:
    """The run's model and dataset, checked against the manifest, and the chosen test samples."""
    from harness.rundir import read_run

    run = read_run(run_dir)
    model = load_checked_model(run)
    dataset = load_checked_dataset(run)
    test = dataset.subset("test")
    index = sample_index(test.group, max_samples_per_group, seed)
    minority, majority = minority_majority(run.manifest, test.group_counts())
    return RunInputs(run=run, model=model, dataset=dataset, x=test.preprocess.apply(test.x[index]),
                     y=np.asarray(test.y[index], np.int64), group=np.asarray(test.group[index]).astype(str),
                     minority=minority, majority=majority)


def load_checked_model(run: "RunData") -> Any:
    """The Keras model at manifest["model"]["path"]; ModelError if missing or not the one the run used."""
    from harness import modelio

    recorded = run.manifest.get("model") or {}
    path, sha = recorded.get("path"), recorded.get("sha256")
    manifest = run.path / "manifest.json"
    if not path:
        raise ModelError(f"{manifest} names no model path; qskew analyze needs the run's Keras model")
    if not Path(path).exists():
        raise ModelError(f"model {path} named by {manifest} is missing; restore it (or rerun the experiment)")
    model = modelio.load_model(path)
    actual = modelio.model_sha256(model)
    if sha and actual != sha:
        raise ModelError(f"model {path} has changed since the run: sha256 {actual[:16]}... != "
                         f"{sha[:16]}... recorded in {manifest}")
    return model


def load_checked_dataset(run: "RunData") -> "GroupedDataset":
    """The run's dataset, reloaded by its config spec (or name); DatasetError if its sha256 differs."""
    from harness import datasets

    recorded = run.manifest.get("dataset") or {}
    data = (run.manifest.get("config") or {}).get("data") or {}
    spec = data.get("dataset") or recorded.get("name")
    if not spec:
        raise DatasetError(f"{run.path / 'manifest.json'} names no dataset")
    options = datasets.TableOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                                       if k in ("label", "features", "groups", "intersections", "unknown")})
    dataset = datasets.load(spec, options)
    if recorded.get("sha256") and dataset.sha256() != recorded["sha256"]:
        raise DatasetError(f"dataset {spec!r} has changed since the run: sha256 {dataset.sha256()[:16]}... != "
                           f"{recorded['sha256'][:16]}... recorded in {run.path / 'manifest.json'}")
    return dataset


def sample_index(groups: np.ndarray, max_per_group: int, seed: int) -> np.ndarray:
    """Indices of at most ``max_per_group`` samples of each group (seeded draw), in dataset order."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups).astype(str)
    parts = []
    for name in sorted(set(groups.tolist())):
        members = np.flatnonzero(groups == name)
        parts.append(members if members.size <= max_per_group else rng.choice(members, max_per_group, replace=False))
    return np.sort(np.concatenate(parts))


@dataclass(frozen=True)
class VariantFile:
    """A variant of the run and its .tflite; ``error`` says why it cannot be analyzed."""

    name: str
    path: Path | None
    error: str = ""


def variant_files(manifest: dict, names: Sequence[str] | None) -> list[VariantFile]:
    """The run's variants (all but fp32 by default), each with its file checked against its sha256."""
    from harness.errors import ConfigError

    recorded = {v.get("variant"): v for v in manifest.get("variants") or []}
    wanted = list(names) if names else [n for n in recorded if n not in SKIPPED_BY_DEFAULT]
    unknown = [n for n in wanted if n not in recorded]
    if unknown:
        raise ConfigError(f"variant(s) {', '.join(unknown)} not in this run; it has: {', '.join(recorded)}")
    return [_variant_file(recorded[n]) for n in wanted]


def _variant_file(entry: dict) -> VariantFile:
    name, path = str(entry["variant"]), entry.get("path")
    if entry.get("error") or not path:
        return VariantFile(name, None, f"variant failed in the run: {entry.get('error') or 'no file'}")
    path = Path(path)
    if not path.is_file():
        return VariantFile(name, None, f"{path} is missing (variant cache cleared?)")
    if entry.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        return VariantFile(name, None, f"{path} has changed since the run (sha256 differs)")
    return VariantFile(name, path)


# -- curvature ----------------------------------------------------------------------------------

def curvature_table(inputs: RunInputs, variants: list[VariantFile], options: AnalyzeOptions,
                    echo: Callable[[str], None]) -> "pd.DataFrame":
    """analysis.csv rows: the reference, then each variant, each with one row per group."""
    echo(f"  reference: curvature per group ({options.iterations} power iterations, {options.probes} probes)")
    reference = _curvature_rows(tables.REFERENCE, inputs.model, inputs, options, 0.0, {})
    base = {r["group"]: r for r in reference}
    rows = list(reference)
    for v in variants:
        error = v.error
        if not error:
            try:
                dq = _dequantized(inputs.model, v.path)
                echo(f"  {v.name}: weights of {len(dq.layers)} layer(s) dequantized from {v.path.name}, "
                     f"||dtheta|| = {dq.weight_delta_norm:.4g}")
                rows += _curvature_rows(v.name, dq.model, inputs, options, dq.weight_delta_norm, base)
                continue
            except ArtifactError as exc:
                error = str(exc)
        echo(f"  {v.name}: not analyzed ({error})")
        rows += [{"variant": v.name, "group": g, "n": int(np.sum(inputs.group == g)), "error": error,
                  "iterations": 0, "probes": 0, "seed": options.seed} for g in sorted(base)]
    return tables.frame(rows, tables.ANALYSIS_COLUMNS)


def _dequantized(model: Any, path: Path):
    from harness.analysis.dequant import dequantized_model

    return dequantized_model(model, path)


def log_probability_model(model: Any) -> Any:
    """A model whose outputs are probabilities, as one that outputs their logarithm (floored as
    in ``harness.metrics.compare.log_probabilities``): softmax cross-entropy of log p is -log p,
    the loss the run scored, so curvature differentiates that loss, not a softmax of probabilities."""
    import keras

    from harness.metrics.compare import PROBABILITY_FLOOR

    logp = keras.ops.log(keras.ops.clip(model.outputs[0], PROBABILITY_FLOOR, 1.0))
    return keras.Model(model.inputs, logp, name=model.name)


def _curvature_rows(variant: str, model: Any, inputs: RunInputs, options: AnalyzeOptions, delta: float,
                    base: dict[str, dict]) -> list[dict]:
    from harness.analysis.curvature import group_curvature

    rows = []
    if (inputs.run.manifest.get("model") or {}).get("outputs") == OUTPUT_PROBABILITIES:
        model = log_probability_model(model)
    for g in sorted(set(inputs.group.tolist())):
        mask = inputs.group == g
        try:
            c = group_curvature(model, inputs.x[mask], inputs.y[mask], options.iterations, options.probes,
                                options.seed)
        except QskewError:
            raise
        except Exception as exc:  # TensorFlow raises many types; translate once, here
            raise ModelError(f"model {model.name!r}: differentiation failed for {variant}/{g}: {exc}") from exc
        ref = base.get(g)
        rows.append({"variant": variant, "group": g, "n": c.n, "loss": c.loss, "logit_variance": c.logit_variance,
                     "grad_norm": c.grad_norm, "hessian_top_eig": c.hessian_top_eig,
                     "hessian_trace": c.hessian_trace, "iterations": c.iterations, "probes": c.probes,
                     "seed": options.seed, "hessian_trace_se": c.hessian_trace_se,
                     "excess_loss": c.loss - ref["loss"] if ref else 0.0, "weight_delta_norm": delta,
                     "excess_loss_bound": (ref["grad_norm"] * delta + 0.5 * abs(ref["hessian_top_eig"]) * delta ** 2
                                           if ref else 0.0), "error": ""})
    return rows


# -- layers -------------------------------------------------------------------------------------

def layer_table(inputs: RunInputs, variants: list[VariantFile], echo: Callable[[str], None]) -> "pd.DataFrame":
    """layers.csv rows for every variant that has a usable file."""
    from harness.analysis.layers import layer_errors

    rows = []
    for v in variants:
        if v.error:
            continue
        try:
            result = layer_errors(inputs.model, v.path, inputs.x, inputs.group)
        except ArtifactError as exc:
            echo(f"  {v.name}: no per-layer errors ({exc})")
            continue
        echo(f"  {v.name}: per-layer errors for {len(result.matches)} layer(s)")
        rows += [{"variant": v.name, **r.__dict__} for r in result.rows]
    return tables.frame(rows, tables.LAYER_COLUMNS)


def _counts(groups: np.ndarray) -> str:
    names, counts = np.unique(groups, return_counts=True)
    return ", ".join(f"{n}: {c}" for n, c in zip(names.tolist(), counts.tolist()))


# -- text the CLI prints ------------------------------------------------------------------------

SKEW_SHOWN = 3  # layers listed per variant under "where the minority loses most"


def format_analysis(analysis: "pd.DataFrame") -> str:
    """One line per model x group: loss, logit variance, gradient norm, top eigenvalue, trace +- se."""
    wv, wg = name_width(analysis.variant, 10), name_width(analysis.group, 12)  # names are never cut
    header = (f"{'variant':{wv}} {'group':{wg}} {'n':>5} {'loss':>8} {'xloss':>8} {'logit_var':>9} {'grad':>9} "
              f"{'lambda_max':>10} {'trace':>18} {'it':>3}")
    lines = [header, "-" * len(header)]
    for r in analysis.itertuples(index=False):
        if r.error:
            lines.append(f"{fit_cell(r.variant, wv):{wv}} {fit_cell(r.group, wg):{wg}} {r.n:>5} not analyzed: {fit_cell(r.error, 60)}")
            continue
        trace = f"{r.hessian_trace:.4g} +- {r.hessian_trace_se:.2g}" if np.isfinite(r.hessian_trace_se) \
            else f"{r.hessian_trace:.4g}"
        lines.append(f"{fit_cell(r.variant, wv):{wv}} {fit_cell(r.group, wg):{wg}} {r.n:>5} {r.loss:8.4f} {r.excess_loss:+8.4f} "
                     f"{r.logit_variance:9.3f} {r.grad_norm:9.4g} {r.hessian_top_eig:10.4g} {trace:>18} "
                     f"{r.iterations:>3}")
    lines.append("variants other than 'reference': their dequantized WEIGHTS in the FP32 Keras model; "
                 "activations stay float")
    lines.append("xloss = loss - reference loss (nats); grad = ||grad L_g||; trace: Hutchinson +- standard error")
    return "\n".join(lines)


def format_skew(skew: "pd.DataFrame", minority: str, majority: str, top: int = SKEW_SHOWN) -> str:
    """Per variant, the ``top`` layers with the largest SNR gap (majority - minority)."""
    if skew.empty:
        return "(no per-layer errors)"
    header = (f"{'variant':10} {'layer':16} {'op':16} {'snr_min':>8} {'snr_maj':>8} {'gap_dB':>7} "
              f"{'rmse_ratio':>10}")
    lines = [f"layers where {minority!r} loses most relative to {majority!r} (top {top} per variant):",
             header, "-" * len(header)]
    for variant, part in skew.groupby("variant", sort=True):
        for r in part.head(top).itertuples(index=False):
            lines.append(f"{fit_cell(variant, 10):10} {fit_cell(r.layer, 16):16} {fit_cell(r.op, 16):16} "
                         f"{r.snr_minority_db:8.2f} {r.snr_majority_db:8.2f} {r.snr_gap_db:+7.2f} "
                         f"{r.rmse_ratio:10.3f}")
    lines.append("snr: 10 log10(signal / error) of the layer's output vs FP32, dB (cumulative through the network); "
                 "gap = majority - minority")
    return "\n".join(lines)
