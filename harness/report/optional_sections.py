"""The report's sections that appear only when the run has what they show.

``delegates`` (a variant ran on the reference kernels and on another delegate), ``mitigation``
(``qskew mitigate``'s variants are in the run) and ``analysis`` (``qskew analyze`` wrote
analysis.csv and layers.csv). Each returns "" when there is nothing to show. The report reads what
the analysis and mitigate stages left in the run directory through the modules below them
(``harness.rundir.analysis_tables``, ``harness.metrics.layer_skew``, ``harness.metrics.mitigation``),
never through the stages themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.markup import esc, html_table, num, pct1, pct2, pp2, pp_ci

if TYPE_CHECKING:
    import pandas as pd

    from harness.rundir import RunData


def mitigation(groups: "pd.DataFrame") -> str:
    """Per target/delegate: each group's drop for the plain variants next to the mitigated ones."""
    from harness.metrics.mitigation import ROLES

    present = [v for v in ROLES if v in set(groups["variant"])]
    if not any(v.endswith(("-qat", "-calib")) for v in present):
        return ""
    parts = []
    for (target, delegate), part in groups[groups["variant"].isin(present)].groupby(["target", "delegate"],
                                                                                   sort=False):
        by_variant = {v: _by_group(part[part["variant"] == v]) for v in present}
        first = by_variant[present[0]]
        rows = [[g or "(all)", first.loc[g, "n"]]
                + [pp_ci(*(t.loc[g, c] for c in ("acc_drop", "acc_drop_lo", "acc_drop_hi")))
                   if g in t.index else "–" for t in by_variant.values()] for g in first.index]
        parts.append(f"<h3>{esc(target)} / {esc(delegate)}</h3>"
                     + html_table(["group", "n"] + [f"{v} ({ROLES[v]})" for v in present], rows, left=(0,)))
    return ("".join(parts) + "<p class=\"note\">drop vs the original FP32 model in percentage points, with "
            "its paired bootstrap interval; \"before\" variants are post-training quantization of the original "
            "model, \"after\" variants come from quantization-aware training (qskew mitigate); fp32-qat is "
            "the fine-tuned model unquantized, so fine-tuning's own effect can be told from quantization's.</p>")


def _by_group(rows: "pd.DataFrame") -> "pd.DataFrame":
    """Rows indexed by the group's name across attributes ("sex=Female"; plain with one attribute),
    the overall row first, then the attributes in table order."""
    import pandas as pd

    from harness.metrics.attributes import attribute_order, qualified

    rank = {a: i for i, a in enumerate(attribute_order(a for a in rows["attribute"] if a))}
    rows = rows.assign(_rank=rows["attribute"].map(lambda a: rank.get(a, -1))).sort_values("_rank", kind="mergesort")
    names = [qualified(a, g) if g else "" for a, g in zip(rows["attribute"], rows["group"])]
    return rows.drop(columns="_rank").set_index(pd.Index(names, name="group"))


def delegates(run: "RunData") -> str:
    """Per variant that ran on the reference kernels and something else: the delegate table
    (drop split into quantization and delegate parts, flips vs the reference kernels, noise) and
    where the ops ran; "" when no variant has a reference-kernel job next to another delegate."""
    from harness.delegate_compare import delegate_table
    from harness.metrics.groups import BASELINE_DELEGATE

    jobs = run.jobs() + run.jobs("failed")
    variants = sorted({v for v, _, d in jobs if d == BASELINE_DELEGATE
                       and any(v2 == v and d2 != BASELINE_DELEGATE for v2, _, d2 in jobs)})
    parts = []
    for variant in variants:
        t = delegate_table(run, variant, run.manifest.get("config", {}).get("run", {}).get("delegates", ()))
        rows = [[r.target if r.group == "" else "", r.delegate if r.group == "" else "",
                 r.group or "(all)", r.n, pct1(r.acc), pp2(r.acc_drop), pp2(r.drop_quantization),
                 pp2(r.drop_delegate), pct2(r.flip_vs_ref), pct2(r.frac_logits_diff), num(r.max_step_diff, ".0f"),
                 num(r.max_abs_dlogit_vs_ref, ".3g"), num(r.noise_max_abs_dlogit, ".3g")] if r.status == "ok" else
                [r.target, r.delegate, f"FAILED: {r.error}"] + [""] * 10 for r in t.itertuples()]
        parts.append(f"<h3>{esc(variant)}</h3>" + html_table(
            ["device", "delegate", "group", "n", "acc %", "drop pp", "quantization pp", "delegate pp",
             "flips vs ref %", "logits ≠ ref %", "max steps vs ref", "max |Δz| vs ref", "run-to-run |Δz|"], rows, left=(0, 1, 2)))
    if not parts:
        return ""
    return ("".join(parts) + _placement_table(run) + "<p class=\"note\">drop = quantization part (FP32 → "
            "the variant on the CPU reference kernels) + delegate part (reference kernels → this "
            "delegate), per group. Flips, logits that differ, steps and |Δz| compare with the same variant on the reference "
            "kernels of the same device (else of another device); steps are quantization steps of the "
            "variant's output tensor (– for float outputs); run-to-run |Δz| is the largest "
            "logit change between repeated runs of the job (--repeat), the noise to beat.</p>")


def _placement_table(run: "RunData") -> str:
    """Per job: how many ops ran on the delegate and how many on the CPU, by source."""
    p = run.placement
    if p is None or p.empty:
        return ""
    rows = []
    for (v, t, d, src), part in p.groupby(["variant", "target", "delegate", "source"], sort=True):
        counts = part.groupby("on")["count"].sum()
        cpu_ops = sorted(set(part.loc[part.on == "cpu", "op"]) - {""})
        rows.append([v, t, d, src, int(counts.get("delegate", 0)), int(counts.get("cpu", 0)),
                     ", ".join(cpu_ops) or ("(whole graph: " + part.on.iloc[0] + ")" if (part.op == "").all() else "")])
    return "<h3>Where the ops ran</h3>" + html_table(
        ["variant", "device", "delegate", "source", "on delegate", "on CPU", "CPU ops"], rows, left=(0, 1, 2, 3, 6))


def analysis(run: "RunData") -> str:
    """analysis.csv and layers.csv of the run directory as tables; "" when analyze has not run."""
    from harness.rundir.analysis_tables import read_analysis, read_layers

    analysis, layers = read_analysis(run.path), read_layers(run.path)
    if analysis is None and layers is None:
        return ""
    parts = _curvature_table(analysis) if analysis is not None else ""
    if layers is not None and len(layers):
        parts += _layer_skew_table(run, layers)
    return parts


def _curvature_table(analysis: "pd.DataFrame") -> str:
    rows = [[r.variant, r.group, r.n, num(r.loss, ".4f"), num(r.excess_loss, "+.4f"),
             num(r.logit_variance, ".4g"), num(r.grad_norm, ".4g"), num(r.hessian_top_eig, ".4g"),
             f"{num(r.hessian_trace, '.4g')} ± {num(r.hessian_trace_se, '.2g')}", r.iterations, r.probes,
             num(r.weight_delta_norm, ".4g"), num(r.excess_loss_bound, ".4g"), r.error]
            for r in analysis.itertuples(index=False)]
    headers = ["model", "group", "n", "loss", "excess loss", "logit var", "‖∇L‖", "λmax",
               "trace (Hutchinson ± se)", "iterations", "probes", "‖Δθ‖", "EL bound", "error"]
    return ("<h3>Per group: loss and curvature</h3>" + html_table(headers, rows, left=(0, 1, 13))
            + "<p class=\"note\">reference = the FP32 Keras model; every other row = the FP32 model with that "
              "variant's weights dequantized from its .tflite put back in. Only the WEIGHTS are quantized in "
              "those models: activations, inputs and logits stay float, so the on-device drop also holds "
              "activation rounding that these rows do not. λmax: eigenvalue of largest magnitude of the group "
              "loss's Hessian (power iteration); EL bound = ‖∇L_ref‖‖Δθ‖ + ½|λmax,ref|‖Δθ‖² (Tran 2022). "
              "All models use the same probes (seed), so trace differences between rows are paired.</p>")


def _layer_skew_table(run: "RunData", layers: "pd.DataFrame") -> str:
    from harness.metrics.layer_skew import minority_majority, skew_table

    minority, majority = minority_majority(run.manifest, {g: 0 for g in sorted(set(layers["group"]))})
    rows = [[r.variant, r.layer, r.op, num(r.snr_minority_db, ".2f"), num(r.snr_majority_db, ".2f"),
             num(r.snr_gap_db, "+.2f"), num(r.rmse_minority, ".4g"), num(r.rmse_majority, ".4g"),
             num(r.rmse_ratio, ".3f")] for r in skew_table(layers, minority, majority).itertuples(index=False)]
    headers = ["variant", "layer", "TFLite op", f"SNR {minority} dB", f"SNR {majority} dB", "gap dB",
               f"RMSE {minority}", f"RMSE {majority}", "RMSE ratio"]
    return (f"<h3>Per layer: where {esc(minority)} loses most relative to {esc(majority)}</h3>"
            + html_table(headers, rows, left=(0, 1, 2))
            + "<p class=\"note\">Each layer's output in the variant's .tflite (all tensors preserved, "
              "dequantized) against the FP32 Keras layer on the same samples; errors accumulate through the "
              "network. gap = SNR(majority) − SNR(minority): positive when the minority's signal is degraded "
              "more. Sorted by gap within each variant. Minority/majority: fewest/most training samples.</p>")
