"""``qskew suggest-mixed``: raise the most group-skewed layers to 16-bit activations and measure it.

1. Rank the int8 variant's layers by ``snr_gap_db`` (majority SNR - minority SNR of the layer's
   output against FP32; ``metrics.layer_skew.skew_table``), from RUN_DIR/layers.csv or computed now. Only
   layers produced by a weight op (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, ...) are
   candidates: a pooling or reshape layer only carries the rounding of the op before it.
2. Turn the top K into a ``mixed_layers_regex``: each layer's tensor name, as an exact op scope of
   the float .tflite (``^<scope>$``, the names ai-edge-quantizer uses), or, if the float model names
   it differently, ``(^|[/;])<layer>(_<digits>)?/``. The regex is checked against the float
   model's ops (``harness.quantize.mixed.choose_layers``) before anything is built.
3. Evaluate int8, int16x8 and the suggested mixed variant into a new run directory with the run's
   own experiment (same dataset, model, calibration, devices), via ``harness.evaluate.evaluate``.
4. Per variant and group: accuracy drop with its 95 % paired bootstrap interval, excess loss, flip
   rate, the worst group and latency per sample; and, per variant, the minority's and majority's
   SNR at the raised layers and at the output (what the recipe buys inside the network: the mixed
   model's output is re-quantized to int8, so a gain in the raised layers can vanish there).

``suggested-mixed.json`` in the new run directory records::

    source_run, source_variant   the analyzed run and the variant whose layers were ranked
    minority, majority           groups compared (fewest / most training samples)
    top                          K
    layers                       [{layer, op, snr_gap_db, rmse_ratio, snr_minority_db,
                                   snr_majority_db, tensor}] the chosen layers, most skewed first
    regex                        the mixed_layers_regex the mixed variant was built with
    matched_ops                  op scopes of the float model the regex raised to 16 bits
    run_dir                      the new run directory
    results                      one record per variant x attribute x group (group "" = overall): n, acc,
                                 acc_drop, acc_drop_lo, acc_drop_hi, excess_loss, flip_rate, worst_group,
                                 latency_ms_per_sample, status, error
    layer_check                  one record per variant x (raised layer, output layer): the columns of
                                 ``metrics.layer_skew.skew_table`` (snr_minority_db, snr_majority_db, snr_gap_db...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from harness.rundir import analysis_tables as tables
from harness.errors import ConfigError, ConversionError

if TYPE_CHECKING:
    import pandas as pd

    from harness.analysis.analyze import RunInputs

TOP_K = 2                           # the quantizer's own default raises the last 2 weight ops: same budget
SOURCE_VARIANT = "int8"             # the variant whose skew a mixed recipe should reduce
COMPARED = ("int8", "int16x8", "mixed")
OUT_SUFFIX = "-suggested-mixed"     # default new run directory: next to RUN_DIR, with this suffix


@dataclass(frozen=True)
class MixedRecipe:
    """The suggested mixed variant: which layers, and the regex that selects them."""

    source_variant: str
    layers: tuple[dict, ...]
    regex: str
    matched_ops: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Suggestion:
    recipe: MixedRecipe
    run_dir: Path
    results: "pd.DataFrame"
    layer_check: "pd.DataFrame"   # analyze.skew_table rows of the chosen layers and the output, per variant
    minority: str
    majority: str
    file: Path


def suggest_mixed(run_dir: Path, top: int = TOP_K, out: Path | None = None, progress: bool = True,
                  echo: Callable[[str], None] = lambda s: None) -> Suggestion:
    """Suggest, build and evaluate the mixed recipe for ``run_dir``; returns what it measured.

    >>> s = suggest_mixed(Path("runs/demo"), top=2)  # doctest: +SKIP
    >>> s.recipe.regex, s.results  # doctest: +SKIP
    """
    from harness.analysis.analyze import load_inputs

    if top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    run_dir = Path(run_dir)
    inputs = load_inputs(run_dir)
    skew = source_skew(inputs, echo)
    float_ops = _float_ops(inputs.model)
    recipe = choose_recipe(skew, top, float_ops)
    echo(f"suggested mixed recipe: {', '.join(d['layer'] for d in recipe.layers)} -> regex {recipe.regex}")
    out = Path(out) if out is not None else run_dir.parent / f"{run_dir.name}{OUT_SUFFIX}"
    _evaluate(inputs, recipe.regex, out, progress, echo)
    results = comparison(out)
    check = layer_check(inputs, out, [d["layer"] for d in recipe.layers])
    record = {"source_run": str(run_dir), "source_variant": recipe.source_variant, "minority": inputs.minority,
              "majority": inputs.majority, "top": top, "layers": list(recipe.layers), "regex": recipe.regex,
              "matched_ops": list(recipe.matched_ops), "run_dir": str(out), "results": _records(results),
              "layer_check": _records(check)}
    file = tables.write_suggestion(out, record)
    return Suggestion(recipe=recipe, run_dir=out, results=results, layer_check=check, minority=inputs.minority,
                      majority=inputs.majority, file=file)


def source_skew(inputs: "RunInputs", echo: Callable[[str], None]) -> "pd.DataFrame":
    """The int8 variant's skew table: from layers.csv if it has int8 rows, else computed now."""
    from harness.analysis.analyze import layer_table, variant_files
    from harness.metrics.layer_skew import skew_table

    layers = tables.read_layers(inputs.run.path)
    if layers is None or not (layers["variant"] == SOURCE_VARIANT).any():
        echo(f"layers.csv has no {SOURCE_VARIANT} rows: computing per-layer errors now")
        files = variant_files(inputs.run.manifest, [SOURCE_VARIANT])
        if files[0].error:
            raise ConfigError(f"{inputs.run.path}: cannot rank layers: {SOURCE_VARIANT} {files[0].error}")
        layers = layer_table(inputs, files, echo)
    skew = skew_table(layers[layers["variant"] == SOURCE_VARIANT], inputs.minority, inputs.majority)
    if skew.empty:
        raise ConfigError(f"{inputs.run.path}: no per-layer errors of {SOURCE_VARIANT} for groups "
                          f"{inputs.minority!r} and {inputs.majority!r}")
    return skew


def choose_recipe(skew: "pd.DataFrame", top: int, float_ops: tuple | None) -> MixedRecipe:
    """The ``top`` weight-op layers with the largest SNR gap, and a regex that selects exactly them."""
    from harness.quantize.mixed import WEIGHT_OPS, choose_layers
    from harness.quantize.options import QuantizeOptions

    candidates = skew[skew["op"].isin(list(WEIGHT_OPS)) & np.isfinite(skew["snr_gap_db"])]
    if candidates.empty:
        raise ConfigError(f"no {SOURCE_VARIANT} layer computed by a weight op ({', '.join(WEIGHT_OPS)}) "
                          "has a finite SNR gap to rank")
    chosen = candidates.head(top)
    scopes = {op.scope for op in float_ops or ()}
    parts = [f"^{re.escape(t + ';')}$" if t + ";" in scopes else rf"(^|[/;]){re.escape(layer)}(_\d+)?/"
             for layer, t in zip(chosen["layer"], chosen["tensor"])]
    regex = "|".join(parts)
    matched: tuple[str, ...] = ()
    if float_ops:
        try:
            matched = tuple(op.scope for op in choose_layers(float_ops, QuantizeOptions(mixed_layers_regex=regex)))
        except ConversionError as exc:
            raise ConfigError(f"the suggested layers {', '.join(chosen['layer'])} select no op of the float "
                              f"model: {exc}") from exc
    layers = tuple({"layer": r.layer, "op": r.op, "snr_gap_db": float(r.snr_gap_db),
                    "rmse_ratio": float(r.rmse_ratio), "snr_minority_db": float(r.snr_minority_db),
                    "snr_majority_db": float(r.snr_majority_db), "tensor": r.tensor}
                   for r in chosen.itertuples(index=False))
    return MixedRecipe(source_variant=SOURCE_VARIANT, layers=layers, regex=regex, matched_ops=matched)


def _float_ops(model: Any) -> tuple | None:
    """Ops of the float .tflite the mixed variant starts from (the quantize cache's fp32 entry)."""
    from harness.quantize.convert import convert
    from harness.quantize.inspect import list_ops

    artifact = convert(model, "fp32", None)
    return list_ops(artifact.path) if artifact.ok and artifact.path else None


def _evaluate(inputs: "RunInputs", regex: str, out: Path, progress: bool, echo: Callable[[str], None]) -> None:
    from harness import config
    from harness.evaluate import ModelSource, evaluate

    raw = dict(inputs.run.manifest.get("config") or {})
    if not raw:
        raise ConfigError(f"{inputs.run.path / 'manifest.json'} holds no experiment config to repeat")
    section = {key: {k: v for k, v in (raw.get(key) or {}).items() if v is not None}  # None = "not given"
               for key in ("data", "model", "quantize", "run")}
    section["quantize"].update(variants=list(COMPARED), mixed_layers_regex=regex)
    exp = config.from_dict({"experiment": {"name": f"{raw.get('name', 'run')}{OUT_SUFFIX}"}, **section},
                           source=f"qskew suggest-mixed {inputs.run.path}")
    source = ModelSource(inputs.model, dict(inputs.run.manifest.get("model") or {}))
    evaluate(exp, inputs.dataset, source, out, progress=progress, echo=echo)


RESULT_COLUMNS = ("variant", "target", "delegate", "attribute", "group", "n", "acc", "acc_drop", "acc_drop_lo", "acc_drop_hi",
                  "excess_loss", "flip_rate", "worst_group", "latency_ms_per_sample", "status", "error")


def comparison(run_dir: Path) -> "pd.DataFrame":
    """Per job of ``run_dir`` and group ("" = overall): accuracy drop with its interval, worst group, latency.

    With several group attributes there is a row per attribute's group (and cell); the job's worst
    group is the attribute-level group (never a cell) with the largest drop, named "sex=Female".
    """
    import pandas as pd

    from harness.metrics.stats import run_stats
    from harness.rundir import read_run

    run = read_run(run_dir)
    stats = run_stats(run)
    metrics = run.metrics.set_index(["variant", "target", "delegate", "attribute", "group"])
    worst = _worst_groups(stats.disparity)
    rows = []
    for entry in run.summary.get("runs", []):
        job = (entry["variant"], entry["target"], entry["delegate"])
        base = dict(zip(("variant", "target", "delegate"), job)) | {
            "latency_ms_per_sample": entry.get("latency_ms_per_sample"), "status": entry["status"],
            "error": entry.get("error") or "", "worst_group": worst.get(job, "")}
        part = stats.groups[(stats.groups["variant"] == job[0]) & (stats.groups["target"] == job[1])
                            & (stats.groups["delegate"] == job[2])]
        if part.empty:
            rows.append(base)
        for r in part.itertuples(index=False):
            m = metrics.loc[(*job, r.attribute, r.group)]
            rows.append(base | {"attribute": r.attribute, "group": r.group, "n": r.n, "acc": r.acc, "acc_drop": r.acc_drop,
                                "acc_drop_lo": r.acc_drop_lo, "acc_drop_hi": r.acc_drop_hi,
                                "excess_loss": float(m["excess_loss"]), "flip_rate": float(m["flip_rate"])})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _worst_groups(disparity: "pd.DataFrame") -> dict[tuple, str]:
    """Per job: its worst group over every attribute (cells excluded), named with its attribute."""
    from harness.metrics.attributes import GROUP_SCOPE, qualified, scope_of

    rows = disparity[[scope_of(a) == GROUP_SCOPE for a in disparity["attribute"]]]
    rows = rows.sort_values("worst_group_drop", ascending=False, kind="mergesort")
    worst: dict[tuple, str] = {}
    for r in rows.itertuples(index=False):
        worst.setdefault((r.variant, r.target, r.delegate), qualified(r.attribute, r.worst_group))
    return worst


def layer_check(inputs: "RunInputs", run_dir: Path, layers: list[str]) -> "pd.DataFrame":
    """Per variant of the new run: minority and majority SNR at the chosen layers and at the output."""
    from harness.analysis.analyze import layer_table, variant_files
    from harness.metrics.layer_skew import skew_table
    from harness.rundir import read_run

    files = [f for f in variant_files(read_run(run_dir).manifest, list(COMPARED)) if not f.error]
    skew = skew_table(layer_table(inputs, files, lambda s: None), inputs.minority, inputs.majority)
    keep = skew[skew["layer"].isin(layers) | (skew["order"] == skew["order"].max())]
    rank = keep["variant"].map({name: i for i, name in enumerate(COMPARED)})
    return keep.assign(_rank=rank).sort_values(["order", "_rank"], kind="mergesort") \
        .drop(columns="_rank").reset_index(drop=True)


def _records(table: "pd.DataFrame") -> list[dict]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def format_suggestion(s: Suggestion) -> str:
    """The recipe, then per variant and group the drop with its interval, the worst group and latency."""
    from harness.metrics.attributes import qualified

    lines = [f"recipe (ranked on {s.recipe.source_variant}: SNR gap {s.majority!r} - {s.minority!r}, dB):"]
    lines += [f"  {d['layer']:16} {d['op']:16} gap {d['snr_gap_db']:+.2f} dB  "
              f"(SNR {d['snr_minority_db']:.2f} vs {d['snr_majority_db']:.2f})" for d in s.recipe.layers]
    lines.append(f"  mixed_layers_regex = {s.recipe.regex!r}")
    lines += [f"  raised to 16-bit activations: {scope}" for scope in s.recipe.matched_ops]
    header = (f"{'variant':9} {'target':8} {'delegate':9} {'group':12} {'n':>5} {'acc%':>6} "
              f"{'drop_pp [95% CI]':>24} {'xloss':>8} {'flip%':>6} {'ms/smp':>7}")
    lines += ["", header, "-" * len(header)]
    for r in s.results.itertuples(index=False):
        if r.status != "ok":
            lines.append(f"{r.variant:9} {r.target:8} {r.delegate:9} FAILED: {r.error}")
            continue
        name = qualified(r.attribute, r.group)
        group = (name + ("*" if name == r.worst_group else "")) if r.group else "(all)"
        latency = "" if r.group or r.latency_ms_per_sample is None or not np.isfinite(r.latency_ms_per_sample) \
            else f"{r.latency_ms_per_sample:.3f}"
        drop = f"{100 * r.acc_drop:+.2f} [{100 * r.acc_drop_lo:+.2f}, {100 * r.acc_drop_hi:+.2f}]"
        lines.append(f"{r.variant:9} {r.target:8} {r.delegate:9} {group:12} {r.n:>5} {100 * r.acc:6.1f} "
                     f"{drop:>24} {r.excess_loss:+8.4f} {100 * r.flip_rate:6.2f} {latency:>7}")
    lines.append("drop_pp = acc(FP32) - acc(variant), percentage points, paired group-stratified bootstrap interval; "
                 "* = worst group")
    lines.append("xloss = excess loss (nats) vs FP32; flip% = samples whose predicted class changed; "
                 "ms/smp = latency per sample")
    lines += ["", f"layer check (SNR of the layer's output vs FP32, dB; gap = {s.majority!r} - {s.minority!r}):"]
    for r in s.layer_check.itertuples(index=False):
        lines.append(f"  {r.variant:9} {r.layer:16} {r.snr_minority_db:8.2f} {r.snr_majority_db:8.2f} "
                     f"gap {r.snr_gap_db:+6.2f}")
    lines.append(f"run directory: {s.run_dir}  (recipe in {s.file.name})")
    return "\n".join(lines)
