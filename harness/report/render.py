"""One self-contained HTML report of a run directory, plus its charts as PNG files.

:func:`build_report` reads a run directory through ``harness.rundir.read_run``, recomputes the
statistics from the stored predictions (``harness.metrics.stats``; nothing statistical is stored
in the run directory) and renders one HTML page whose charts are embedded as base64 PNG ``data:``
URIs: no script, no stylesheet, image or font is fetched from anywhere, so the file opens from an
email attachment or an air-gapped laptop. Every piece of text from the run (group names, device
properties, error messages...) is HTML-escaped.

Sections, in order: summary (disparity per job with intervals), accuracy per group (FP32 and each
variant, Wilson bars), heatmap of per-group drops over variant x target x delegate, logit variance
and margin per group (reference vs variant), flips in both directions with McNemar tests,
calibration-set group shares, provenance (model and variant hashes, runtime versions, devices).
When ``qskew analyze`` has written analysis.csv and layers.csv into the run directory, an
"analysis" section (:data:`ANALYSIS_SECTION`) comes before provenance: per-group curvature of the
FP32 model and of each variant's dequantized weights, and per-layer errors ranked by group skew.
When the run holds ``qskew mitigate``'s variants (``*-qat``, ``*-calib``), a "mitigation" section
(:data:`MITIGATION_SECTION`) puts each group's drop before and after side by side.

:func:`write_report` writes the page (default ``RUN_DIR/report/report.html``) and each chart as
``<stem>-<chart>.png`` in the same folder.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from harness.metrics.stats import CONFIDENCE, N_RESAMPLES, SEED

if TYPE_CHECKING:
    import pandas as pd

    from harness.metrics.stats import Stats
    from harness.rundir import RunData

REPORT_FILE = "report.html"  # default page name inside the run directory's report folder
SECTIONS = (("summary", "Summary"), ("accuracy", "Accuracy per group"), ("drops", "Drop heatmap"),
            ("logits", "Logit variance and margin"), ("flips", "Flips"),
            ("calibration", "Calibration set"), ("provenance", "Provenance"))
ANALYSIS_SECTION = ("analysis", "Why it skews: curvature and layers")  # only when qskew analyze ran
MITIGATION_SECTION = ("mitigation", "Before and after mitigation")  # only when qskew mitigate's variants ran
DELEGATES_SECTION = ("delegates", "Delegates: quantization vs delegate")  # only with reference-kernel jobs

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.warn{color:#a04000}.note{color:#555;font-size:12px}
img{max-width:100%;height:auto;border:1px solid #eee}code{font-size:11px}
nav a{margin-right:12px}
"""


@dataclass(frozen=True)
class Report:
    """A rendered report: the HTML text and the PNG bytes of each chart (name -> bytes)."""

    html: str
    images: Mapping[str, bytes]


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_report` put the page and the charts."""

    html: Path
    pngs: tuple[Path, ...]


def write_report(run_dir: Path, out: Path | None = None, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> ReportFiles:
    """Write the report of ``run_dir`` to ``out`` (default RUN_DIR/report/report.html) and its
    charts next to it as ``<stem>-<chart>.png``.

    Example::

        files = write_report(Path("runs/demo"))
        print(files.html)  # runs/demo/report/report.html
    """
    from harness.errors import ResultsError
    from harness.rundir import report_dir

    report = build_report(run_dir, n_resamples=n_resamples, seed=seed)
    out = Path(out) if out is not None else report_dir(run_dir) / REPORT_FILE
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        pngs = []
        for name, data in report.images.items():
            path = out.parent / f"{out.stem}-{name}.png"
            path.write_bytes(data)
            pngs.append(path)
        out.write_text(report.html, encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot write the report {out}: {exc}") from exc
    return ReportFiles(html=out, pngs=tuple(pngs))


def build_report(run_dir: Path, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Report:
    """Read ``run_dir``, compute the statistics and render the page and its charts."""
    import pandas as pd

    from harness.metrics.stats import compute_stats
    from harness.report import plots
    from harness.rundir import read_run

    run = read_run(Path(run_dir))
    frames = {job: run.per_sample(*job) for job in run.jobs("ok")}
    empty = pd.DataFrame(columns=["variant", "target", "delegate"])
    stats = compute_stats(pd.concat(frames.values(), ignore_index=True) if frames else empty,
                          n_resamples=n_resamples, seed=seed)
    images: dict[str, bytes] = {}
    if frames:
        images["accuracy"] = plots.accuracy_plot(stats.groups)
        images["drops"] = plots.drop_heatmap(stats.groups)
        images["logits"] = plots.distribution_plot(frames)
        images["flips"] = plots.flips_plot(stats.groups)
    calibration = run.manifest.get("calibration") or {}
    test_counts = ((run.manifest.get("dataset") or {}).get("group_counts") or {}).get("test") or {}
    if calibration.get("group_shares"):
        images["calibration"] = plots.calibration_plot(calibration["group_shares"], test_counts)
    return Report(html=render_html(run, stats, images), images=images)


def render_html(run: "RunData", stats: "Stats", images: Mapping[str, bytes]) -> str:
    """The page: every section in :data:`SECTIONS`, charts inlined from ``images``."""
    manifest = run.manifest
    title = f"qskew report: {run.path.name}"
    head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>")
    analysis, mitigation, delegates = _analysis(run), _mitigation(stats.groups), _delegates(run)
    extra = (((DELEGATES_SECTION,) if delegates else ()) + ((MITIGATION_SECTION,) if mitigation else ())
             + ((ANALYSIS_SECTION,) if analysis else ()))
    sections = SECTIONS[:-1] + extra + SECTIONS[-1:]
    nav = "<nav>" + "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name in sections) + "</nav>"
    intro = (f"<h1>{_e(title)}</h1><p class=\"note\">dataset {_e(_get(manifest, 'dataset', 'name'))} · "
             f"model {_e(_model_name(manifest))} · created {_e(manifest.get('created', '?'))} · "
             f"intervals: {CONFIDENCE:.0%}, Wilson for accuracies, paired group-stratified bootstrap "
             f"({_e(_resamples(stats))} resamples, seed {_e(_seed(stats))}) for drops. Drops are "
             f"acc(FP32) − acc(variant) in percentage points: positive means the variant is worse.</p>")
    body = [
        _section("summary", _summary(run, stats)),
        _section("accuracy", _img(images, "accuracy") + _group_table(stats.groups)),
        _section("drops", _img(images, "drops")),
        _section("logits", _img(images, "logits") + _logit_table(run.metrics)),
        _section("flips", _img(images, "flips") + _flip_table(stats.groups)),
        _section("calibration", _calibration(manifest, images)),
        _section("delegates", delegates) if delegates else "",
        _section("mitigation", mitigation) if mitigation else "",
        _section("analysis", analysis) if analysis else "",
        _section("provenance", _provenance(run)),
    ]
    return head + intro + nav + "".join(body) + "</body></html>\n"


# -- sections ----------------------------------------------------------------------------------

def _summary(run: "RunData", stats: "Stats") -> str:
    d = stats.disparity
    rows = [[_job(r), r.n, _pp_ci(r.overall_drop, r.overall_drop_lo, r.overall_drop_hi), r.worst_group,
             _pp_ci(r.worst_group_drop, r.worst_group_drop_lo, r.worst_group_drop_hi), r.psi_group,
             _pp_ci(r.psi, r.psi_lo, r.psi_hi), _pp_ci(r.drop_gap, r.drop_gap_lo, r.drop_gap_hi)]
            for r in d.itertuples(index=False)]
    table = _table(["job (variant / target / delegate)", "n", "overall drop", "worst group", "its drop",
                    "ψ group", "ψ", "drop gap"], rows, left=(0, 3, 5))
    failed = [r for r in run.summary.get("runs", []) if r.get("status") != "ok"]
    note = ""
    if failed:
        note = "<p class=\"warn\">Failed jobs: " + "; ".join(
            _e(f"{r['variant']} / {r['target']} / {r['delegate']} ({r.get('stage')}): {r.get('error')}")
            for r in failed) + "</p>"
    warned = stats.groups[stats.groups["warnings"] != ""]
    if len(warned):
        note += (f"<p class=\"warn\">{len(warned)} row(s) carry small-sample warnings (n&lt;100: interval "
                 "too wide to read alone; b+c&lt;6: no exact McNemar test can reach p&lt;0.05). "
                 "See the tables below.</p>")
    if d.empty:
        return "<p>No job finished: nothing to report.</p>" + note
    return (table + "<p class=\"note\">ψ = a group's drop minus the overall drop (largest shown); drop gap = "
            "largest minus smallest group drop. Brackets: 95 % intervals.</p>" + note)


def _group_table(groups: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, _pct_ci(r.acc_ref, r.acc_ref_lo, r.acc_ref_hi),
             _pct_ci(r.acc, r.acc_lo, r.acc_hi), _pp_ci(r.acc_drop, r.acc_drop_lo, r.acc_drop_hi),
             _pp_ci(r.psi, r.psi_lo, r.psi_hi), r.warnings] for r in groups.itertuples(index=False)]
    return _table(["job", "group", "n", "FP32 acc %", "variant acc %", "drop pp", "ψ pp", "warnings"],
                  rows, left=(0, 1, 7))


def _logit_table(metrics: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, _num(r.logit_var_ref, ".4g"), _num(r.logit_var, ".4g"),
             _num(r.logit_var / r.logit_var_ref if r.logit_var_ref else math.nan, ".3f"),
             _num(r.margin_ref, ".3f"), _num(r.margin, ".3f"), _num(r.excess_loss, "+.4f")]
            for r in metrics.itertuples(index=False)]
    return (_table(["job", "group", "n", "logit var FP32", "logit var", "ratio", "margin FP32", "margin",
                    "excess loss (nats)"], rows, left=(0, 1))
            + "<p class=\"note\">Means over the group's samples. A ratio below 1 means flatter logits "
              "under the variant (the mechanism behind disparate damage: lower logit variance, "
              "smaller margins, higher loss).</p>")


def _flip_table(groups: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, r.c, r.b, r.flips, _num(100 * r.flip_rate, ".2f"),
             _num(r.mcnemar_p, ".3g"), _num(r.mcnemar_p_holm, ".3g"), r.warnings]
            for r in groups.itertuples(index=False)]
    return (_table(["job", "group", "n", "right→wrong c", "wrong→right b", "flips", "flip %",
                    "McNemar p", "Holm p", "warnings"], rows, left=(0, 1, 9))
            + "<p class=\"note\">Exact McNemar test on b and c per group; Holm-adjusted across the groups "
              "of each job. Flips also count samples both models got wrong with different answers.</p>")


def _calibration(manifest: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    calibration = manifest.get("calibration")
    if not calibration:
        return "<p>No calibration set: no variant of this run needed one (static integer variants do).</p>"
    shares = calibration.get("group_shares") or {}
    rows = [[g, _num(100 * float(s), ".1f")] for g, s in sorted(shares.items())]
    meta = (f"<p>size {_e(calibration.get('size'))}, strategy {_e(calibration.get('strategy'))}, "
            f"seed {_e(calibration.get('seed'))}, sha256 <code>{_e(calibration.get('sha256'))}</code></p>")
    return meta + _img(images, "calibration") + _table(["group", "share %"], rows, left=(0,))


def _mitigation(groups: "pd.DataFrame") -> str:
    """Per target/delegate: each group's drop for the plain variants next to the mitigated ones."""
    from harness.mitigate.table import ROLES

    present = [v for v in ROLES if v in set(groups["variant"])]
    if not any(v.endswith(("-qat", "-calib")) for v in present):
        return ""
    parts = []
    for (target, delegate), part in groups[groups["variant"].isin(present)].groupby(["target", "delegate"],
                                                                                   sort=False):
        by_variant = {v: part[part["variant"] == v].set_index("group") for v in present}
        first = by_variant[present[0]]
        rows = [[g or "(all)", first.loc[g, "n"]]
                + [_pp_ci(*(t.loc[g, c] for c in ("acc_drop", "acc_drop_lo", "acc_drop_hi")))
                   if g in t.index else "–" for t in by_variant.values()] for g in first.index]
        parts.append(f"<h3>{_e(target)} / {_e(delegate)}</h3>"
                     + _table(["group", "n"] + [f"{v} ({ROLES[v]})" for v in present], rows, left=(0,)))
    return ("".join(parts) + "<p class=\"note\">drop vs the original FP32 model in percentage points, with "
            "its paired bootstrap interval; \"before\" variants are post-training quantization of the original "
            "model, \"after\" variants come from quantization-aware training (qskew mitigate); fp32-qat is "
            "the fine-tuned model unquantized, so fine-tuning's own effect can be told from quantization's.</p>")


def _delegates(run: "RunData") -> str:
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
                 r.group or "(all)", r.n, _pct1(r.acc), _pp2(r.acc_drop), _pp2(r.drop_quantization),
                 _pp2(r.drop_delegate), _pct2(r.flip_vs_ref), _num(r.max_abs_dlogit_vs_ref, ".3g"),
                 _num(r.noise_max_abs_dlogit, ".3g")] if r.status == "ok" else
                [r.target, r.delegate, f"FAILED: {r.error}"] + [""] * 8 for r in t.itertuples()]
        parts.append(f"<h3>{_e(variant)}</h3>" + _table(
            ["device", "delegate", "group", "n", "acc %", "drop pp", "quantization pp", "delegate pp",
             "flips vs ref %", "max |Δz| vs ref", "run-to-run |Δz|"], rows, left=(0, 1, 2)))
    if not parts:
        return ""
    return ("".join(parts) + _placement_table(run) + "<p class=\"note\">drop = quantization part (FP32 → "
            "the variant on the CPU reference kernels) + delegate part (reference kernels → this "
            "delegate), per group. Flips and |Δz| compare with the same variant on the reference "
            "kernels of the same device (else of another device); run-to-run |Δz| is the largest "
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
    return "<h3>Where the ops ran</h3>" + _table(
        ["variant", "device", "delegate", "source", "on delegate", "on CPU", "CPU ops"], rows, left=(0, 1, 2, 3, 6))


def _pct1(x) -> str:
    return _num(100 * x, ".1f")


def _pct2(x) -> str:
    return _num(100 * x, ".2f")


def _pp2(x) -> str:
    return _num(100 * x, "+.2f")


def _analysis(run: "RunData") -> str:
    """analysis.csv and layers.csv of the run directory as tables; "" when analyze has not run."""
    from harness.analysis.tables import read_analysis, read_layers

    analysis, layers = read_analysis(run.path), read_layers(run.path)
    if analysis is None and layers is None:
        return ""
    parts = _curvature_table(analysis) if analysis is not None else ""
    if layers is not None and len(layers):
        parts += _layer_skew_table(run, layers)
    return parts


def _curvature_table(analysis: "pd.DataFrame") -> str:
    rows = [[r.variant, r.group, r.n, _num(r.loss, ".4f"), _num(r.excess_loss, "+.4f"),
             _num(r.logit_variance, ".4g"), _num(r.grad_norm, ".4g"), _num(r.hessian_top_eig, ".4g"),
             f"{_num(r.hessian_trace, '.4g')} ± {_num(r.hessian_trace_se, '.2g')}", r.iterations, r.probes,
             _num(r.weight_delta_norm, ".4g"), _num(r.excess_loss_bound, ".4g"), r.error]
            for r in analysis.itertuples(index=False)]
    headers = ["model", "group", "n", "loss", "excess loss", "logit var", "‖∇L‖", "λmax",
               "trace (Hutchinson ± se)", "iterations", "probes", "‖Δθ‖", "EL bound", "error"]
    return ("<h3>Per group: loss and curvature</h3>" + _table(headers, rows, left=(0, 1, 13))
            + "<p class=\"note\">reference = the FP32 Keras model; every other row = the FP32 model with that "
              "variant's weights dequantized from its .tflite put back in. Only the WEIGHTS are quantized in "
              "those models: activations, inputs and logits stay float, so the on-device drop also holds "
              "activation rounding that these rows do not. λmax: eigenvalue of largest magnitude of the group "
              "loss's Hessian (power iteration); EL bound = ‖∇L_ref‖‖Δθ‖ + ½|λmax,ref|‖Δθ‖² (Tran 2022). "
              "All models use the same probes (seed), so trace differences between rows are paired.</p>")


def _layer_skew_table(run: "RunData", layers: "pd.DataFrame") -> str:
    from harness.analysis.analyze import minority_majority, skew_table

    minority, majority = minority_majority(run.manifest, {g: 0 for g in sorted(set(layers["group"]))})
    rows = [[r.variant, r.layer, r.op, _num(r.snr_minority_db, ".2f"), _num(r.snr_majority_db, ".2f"),
             _num(r.snr_gap_db, "+.2f"), _num(r.rmse_minority, ".4g"), _num(r.rmse_majority, ".4g"),
             _num(r.rmse_ratio, ".3f")] for r in skew_table(layers, minority, majority).itertuples(index=False)]
    headers = ["variant", "layer", "TFLite op", f"SNR {minority} dB", f"SNR {majority} dB", "gap dB",
               f"RMSE {minority}", f"RMSE {majority}", "RMSE ratio"]
    return (f"<h3>Per layer: where {_e(minority)} loses most relative to {_e(majority)}</h3>"
            + _table(headers, rows, left=(0, 1, 2))
            + "<p class=\"note\">Each layer's output in the variant's .tflite (all tensors preserved, "
              "dequantized) against the FP32 Keras layer on the same samples; errors accumulate through the "
              "network. gap = SNR(majority) − SNR(minority): positive when the minority's signal is degraded "
              "more. Sorted by gap within each variant. Minority/majority: fewest/most training samples.</p>")


def _provenance(run: "RunData") -> str:
    m = run.manifest
    model = m.get("model") or {}
    dataset = m.get("dataset") or {}
    parts = ["<h3>Model and data</h3>", _kv_table({
        "run directory": str(run.path), "created": m.get("created"), "updated": m.get("updated"),
        "config_hash": m.get("config_hash"), **{f"model {k}": v for k, v in model.items()},
        "dataset": dataset.get("name"), "dataset sha256": dataset.get("sha256"),
        "dataset description": dataset.get("description")})]
    variants = [[v.get("variant"), v.get("sha256"), v.get("size_bytes"), _compact(v.get("recipe")),
                 v.get("error") or ""] for v in m.get("variants") or []]
    parts += ["<h3>Variants</h3>", _table(["variant", "sha256", "bytes", "recipe", "error"], variants,
                                          left=(0, 1, 3, 4))]
    jobs = [[_job_dict(r), r.get("status"), r.get("runtime"), r.get("runtime_version"),
             r.get("delegate_applied"), r.get("batch_size"), _num(r.get("latency_ms_per_sample"), ".3f"),
             r.get("artifact_sha256"), r.get("error") or ""] for r in run.summary.get("runs", [])]
    parts += ["<h3>Jobs</h3>", _table(["job", "status", "runtime", "version", "delegate applied", "batch",
                                       "ms/sample", "artifact sha256", "error"], jobs, left=(0, 1, 2, 3, 4, 7, 8))]
    for name, props in sorted((m.get("targets") or {}).items()):
        parts += [f"<h3>Device {_e(name)}</h3>", _kv_table(props if isinstance(props, Mapping) else {"": props})]
    parts += ["<h3>Versions</h3>", _kv_table(m.get("versions") or {})]
    return "".join(parts)


# -- HTML helpers (everything passes through _e) ------------------------------------------------

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _section(key: str, content: str) -> str:
    title = dict(SECTIONS + (ANALYSIS_SECTION, MITIGATION_SECTION, DELEGATES_SECTION))[key]
    return f'<section id="{_e(key)}"><h2>{_e(title)}</h2>{content}</section>'


def _img(images: Mapping[str, bytes], name: str) -> str:
    if name not in images:
        return "<p class=\"note\">(no chart: no finished job)</p>"
    data = base64.b64encode(images[name]).decode("ascii")
    return f'<p><img alt="{_e(name)} chart" src="data:image/png;base64,{data}"></p>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="l"' if i in left else ""
        return f"<{tag}{cls}>{_e(value)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _kv_table(mapping: Mapping[str, Any]) -> str:
    return _table(["key", "value"], [[k, _compact(v)] for k, v in mapping.items()], left=(0, 1))


def _compact(value: Any) -> str:
    import json

    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def _job(row) -> str:
    return f"{row.variant} / {row.target} / {row.delegate}"


def _job_dict(row: Mapping[str, Any]) -> str:
    return f"{row.get('variant')} / {row.get('target')} / {row.get('delegate')}"


def _num(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _pp_ci(point: float, lo: float, hi: float) -> str:
    if point is None or not math.isfinite(point):
        return "–"
    return f"{100 * point:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def _pct_ci(point: float, lo: float, hi: float) -> str:
    return f"{100 * point:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _get(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, Mapping) else None
    return mapping if mapping is not None else "?"


def _model_name(manifest: Mapping[str, Any]) -> str:
    model = manifest.get("model") or {}
    return str(model.get("name") or model.get("path") or "?")


def _resamples(stats: "Stats") -> str:
    d = stats.disparity
    return str(int(d["n_resamples"].iloc[0])) if len(d) else "-"


def _seed(stats: "Stats") -> str:
    d = stats.disparity
    return str(int(d["seed"].iloc[0])) if len(d) else "-"
