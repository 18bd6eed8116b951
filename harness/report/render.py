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
"analysis" section (:data:`ANALYSIS_SECTION`, then "bisect" when RUN_DIR/bisect/bisect.csv exists) comes before provenance: per-group curvature of the
FP32 model and of each variant's dequantized weights, and per-layer errors ranked by group skew.
When the run holds ``qskew mitigate``'s variants (``*-qat``, ``*-calib``), a "mitigation" section
(:data:`MITIGATION_SECTION`) puts each group's drop before and after side by side. Those optional
sections (and the delegates one) are built in ``optional_sections.py``; ``markup.py`` holds the
HTML pieces every section uses.

:func:`write_report` writes the page (default ``RUN_DIR/report/report.html``) and each chart as
``<stem>-<chart>.png`` in the same folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from harness.metrics.stats import CONFIDENCE, N_RESAMPLES, SEED
from harness.report import optional_sections, views
from harness.report.bisect_section import bisect_section
from harness.report.markup import compact, esc, html_table, img, kv_table, num, pct2, pct_ci, pp_ci

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
BISECT_SECTION = ("bisect", "Bisect: where a job's tensors first differ")  # only when qskew bisect ran

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
                          n_resamples=n_resamples, seed=seed, attrs=run.attributes)
    images: dict[str, bytes] = {}
    for attribute in _split(views.attributes_of(stats.groups)) if frames else ():
        view = views.rows_of(stats.groups, attribute)
        label = {} if attribute is None else {"title": views.title(attribute)}
        images[views.chart_name("accuracy", attribute)] = plots.accuracy_plot(view, **label)
        images[views.chart_name("drops", attribute)] = plots.drop_heatmap(view, **label)
        images[views.chart_name("logits", attribute)] = plots.distribution_plot(
            views.frames_of(frames, run.attributes, attribute), **label)
        images[views.chart_name("flips", attribute)] = plots.flips_plot(view, **label)
    calibration = run.manifest.get("calibration") or {}
    test_counts = ((run.manifest.get("dataset") or {}).get("group_counts") or {}).get("test") or {}
    for attribute in _split(run.attributes.reported) if calibration.get("group_shares") else ():
        if attribute is None:
            images["calibration"] = plots.calibration_plot(calibration["group_shares"], test_counts)
            continue
        images[views.chart_name("calibration", attribute)] = plots.calibration_plot(
            views.split_shares(calibration["group_shares"], run.attributes, attribute),
            views.split_shares(test_counts, run.attributes, attribute), title=views.title(attribute).capitalize())
    return Report(html=render_html(run, stats, images), images=images)


def _split(attributes) -> list:
    """[None] (one chart per section) for a one-attribute run, else its attributes in table order."""
    attributes = views.attribute_order(attributes)
    return list(attributes) if views.several(attributes) else [None]


def render_html(run: "RunData", stats: "Stats", images: Mapping[str, bytes]) -> str:
    """The page: every section in :data:`SECTIONS`, charts inlined from ``images``."""
    manifest = run.manifest
    title = f"qskew report: {run.path.name}"
    head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>")
    analysis = optional_sections.analysis(run)
    mitigation = optional_sections.mitigation(stats.groups)
    delegates = optional_sections.delegates(run)
    bisected = bisect_section(run.path)
    extra = (((DELEGATES_SECTION,) if delegates else ()) + ((MITIGATION_SECTION,) if mitigation else ())
             + ((ANALYSIS_SECTION,) if analysis else ()) + ((BISECT_SECTION,) if bisected else ()))
    sections = SECTIONS[:-1] + extra + SECTIONS[-1:]
    nav = "<nav>" + "".join(f'<a href="#{key}">{esc(name)}</a>' for key, name in sections) + "</nav>"
    intro = (f"<h1>{esc(title)}</h1><p class=\"note\">dataset {esc(_get(manifest, 'dataset', 'name'))} · "
             f"model {esc(_model_name(manifest))} · created {esc(manifest.get('created', '?'))} · "
             f"intervals: {CONFIDENCE:.0%}, Wilson for accuracies, paired group-stratified bootstrap "
             f"({esc(_resamples(stats))} resamples, seed {esc(_seed(stats))}) for drops. Drops are "
             f"acc(FP32) − acc(variant) in percentage points: positive means the variant is worse.</p>")
    intro += "".join(f'<p class="note"><b>note:</b> {esc(note)}</p>' for note in manifest.get("notes") or ())
    names = views.attributes_of(stats.groups)

    def each(chart: str, table=None, rows=None) -> str:
        """Per attribute (or once): the chart, then ``table`` of the attribute's ``rows``."""
        return views.per_attribute(names, lambda a: img(images, views.chart_name(chart, a))
                                   + (table(views.rows_of(rows, a)) if table else ""))

    body = [
        _section("summary", _summary(run, stats)),
        _section("accuracy", each("accuracy", _group_table, stats.groups)),
        _section("drops", each("drops")),
        _section("logits", each("logits", _logit_table, run.metrics)),
        _section("flips", each("flips", _flip_table, stats.groups)),
        _section("calibration", _calibration(run, images)),
        _section("delegates", delegates) if delegates else "",
        _section("mitigation", mitigation) if mitigation else "",
        _section("analysis", analysis) if analysis else "",
        _section("bisect", bisected) if bisected else "",
        _section("provenance", _provenance(run)),
    ]
    return head + intro + nav + "".join(body) + "</body></html>\n"


# -- sections ----------------------------------------------------------------------------------

def _summary(run: "RunData", stats: "Stats") -> str:
    d = stats.disparity
    split = views.several(views.attributes_of(d))
    if split:  # each job's attributes in table order
        rank = {a: i for i, a in enumerate(views.attributes_of(d))}
        d = d.assign(_rank=d["attribute"].map(rank)).sort_values(["variant", "target", "delegate", "_rank"],
                                                                 kind="mergesort")
    rows = [[_job(r)] + ([_attribute_label(r.attribute)] if split else [])
            + [r.n, pp_ci(r.overall_drop, r.overall_drop_lo, r.overall_drop_hi), r.worst_group,
               pp_ci(r.worst_group_drop, r.worst_group_drop_lo, r.worst_group_drop_hi), r.psi_group,
               pp_ci(r.psi, r.psi_lo, r.psi_hi), pp_ci(r.drop_gap, r.drop_gap_lo, r.drop_gap_hi)]
            for r in d.itertuples(index=False)]
    headers = ["job (variant / target / delegate)", "n", "overall drop", "worst group", "its drop",
               "ψ group", "ψ", "drop gap"]
    table = (html_table(headers[:1] + ["attribute"] + headers[1:], rows, left=(0, 1, 4, 6)) if split
             else html_table(headers, rows, left=(0, 3, 5)))
    failed = [r for r in run.summary.get("runs", []) if r.get("status") != "ok"]
    note = ""
    if failed:
        note = "<p class=\"warn\">Failed jobs: " + "; ".join(
            esc(f"{r['variant']} / {r['target']} / {r['delegate']} ({r.get('stage')}): {r.get('error')}")
            for r in failed) + "</p>"
    warned = stats.groups[stats.groups["warnings"] != ""]
    if len(warned):
        note += (f"<p class=\"warn\">{len(warned)} row(s) carry small-sample warnings (n&lt;100: interval "
                 "too wide to read alone; b+c&lt;6: no exact McNemar test can reach p&lt;0.05). "
                 "See the tables below.</p>")
    if d.empty:
        return "<p>No job finished: nothing to report.</p>" + note
    if split:
        note += ("<p class=\"note\">One row per job and group attribute: each attribute's groups are compared "
                 "among themselves. Rows marked \"cells\" are the attributes' intersection: small by nature, "
                 "they can WARN in a sign-off but never FAIL it.</p>")
    return (table + "<p class=\"note\">ψ = a group's drop minus the overall drop (largest shown); drop gap = "
            "largest minus smallest group drop. Brackets: 95 % intervals.</p>" + note)


def _attribute_label(attribute: str) -> str:
    return f"{attribute} (cells)" if views.is_cell(attribute) else attribute


def _group_table(groups: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, pct_ci(r.acc_ref, r.acc_ref_lo, r.acc_ref_hi),
             pct_ci(r.acc, r.acc_lo, r.acc_hi), pp_ci(r.acc_drop, r.acc_drop_lo, r.acc_drop_hi),
             pp_ci(r.psi, r.psi_lo, r.psi_hi), r.warnings] for r in groups.itertuples(index=False)]
    return html_table(["job", "group", "n", "FP32 acc %", "variant acc %", "drop pp", "ψ pp", "warnings"],
                      rows, left=(0, 1, 7))


def _logit_table(metrics: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, num(r.logit_var_ref, ".4g"), num(r.logit_var, ".4g"),
             num(r.logit_var / r.logit_var_ref if r.logit_var_ref else math.nan, ".3f"),
             num(r.margin_ref, ".3f"), num(r.margin, ".3f"), num(r.excess_loss, "+.4f"),
             pct2(r.frac_logits_diff), num(r.max_step_diff, ".0f")]
            for r in metrics.itertuples(index=False)]
    return (html_table(["job", "group", "n", "logit var FP32", "logit var", "ratio", "margin FP32", "margin",
                        "excess loss (nats)", "logits ≠ ref. kernels %", "max steps"], rows, left=(0, 1))
            + "<p class=\"note\">Means over the group's samples. A ratio below 1 means flatter logits "
              "under the variant (the mechanism behind disparate damage: lower logit variance, "
              "smaller margins, higher loss). The last two columns set the job against the same "
              "variant on the CPU reference kernels (this device's job, else another device's): the "
              "share of logits that differ, and the largest difference in the output tensor's "
              "quantization steps (– for float outputs, or when the run has no such job).</p>")


def _flip_table(groups: "pd.DataFrame") -> str:
    rows = [[_job(r), r.group or "(all)", r.n, r.c, r.b, r.flips, num(100 * r.flip_rate, ".2f"),
             num(r.mcnemar_p, ".3g"), num(r.mcnemar_p_holm, ".3g"), r.warnings]
            for r in groups.itertuples(index=False)]
    return (html_table(["job", "group", "n", "right→wrong c", "wrong→right b", "flips", "flip %",
                        "McNemar p", "Holm p", "warnings"], rows, left=(0, 1, 9))
            + "<p class=\"note\">Exact McNemar test on b and c per group; Holm-adjusted across the groups "
              "of each job. Flips also count samples both models got wrong with different answers.</p>")


def _calibration(run: "RunData", images: Mapping[str, bytes]) -> str:
    calibration = run.manifest.get("calibration")
    if not calibration:
        return "<p>No calibration set: no variant of this run needed one (static integer variants do).</p>"
    cells = calibration.get("group_shares") or {}
    meta = (f"<p>size {esc(calibration.get('size'))}, strategy {esc(calibration.get('strategy'))}, "
            f"seed {esc(calibration.get('seed'))}, sha256 <code>{esc(calibration.get('sha256'))}</code></p>")

    def shares(attribute: str | None) -> str:
        split = cells if attribute is None else views.split_shares(cells, run.attributes, attribute)
        rows = [[g, num(100 * float(s), ".1f")] for g, s in sorted(split.items())]
        return img(images, views.chart_name("calibration", attribute)) + html_table(["group", "share %"], rows,
                                                                                   left=(0,))
    return meta + views.per_attribute(views.attribute_order(run.attributes.reported), shares)


def _provenance(run: "RunData") -> str:
    m = run.manifest
    model = m.get("model") or {}
    dataset = m.get("dataset") or {}
    parts = ["<h3>Model and data</h3>", kv_table({
        "run directory": str(run.path), "created": m.get("created"), "updated": m.get("updated"),
        "config_hash": m.get("config_hash"), **{f"model {k}": v for k, v in model.items()},
        "dataset": dataset.get("name"), "dataset sha256": dataset.get("sha256"),
        "dataset description": dataset.get("description")})]
    variants = [[v.get("variant"), v.get("sha256"), v.get("size_bytes"), compact(v.get("recipe")),
                 v.get("error") or ""] for v in m.get("variants") or []]
    parts += ["<h3>Variants</h3>", html_table(["variant", "sha256", "bytes", "recipe", "error"], variants,
                                              left=(0, 1, 3, 4))]
    jobs = [[_job_dict(r), r.get("status"), r.get("runtime"), r.get("runtime_version"),
             r.get("delegate_applied"), r.get("batch_size"), num(r.get("latency_ms_per_sample"), ".3f"),
             r.get("artifact_sha256"), r.get("error") or ""] for r in run.summary.get("runs", [])]
    parts += ["<h3>Jobs</h3>", html_table(["job", "status", "runtime", "version", "delegate applied", "batch",
                                           "ms/sample", "artifact sha256", "error"], jobs,
                                          left=(0, 1, 2, 3, 4, 7, 8))]
    for name, props in sorted((m.get("targets") or {}).items()):
        parts += [f"<h3>Device {esc(name)}</h3>", kv_table(props if isinstance(props, Mapping) else {"": props})]
    parts += ["<h3>Versions</h3>", kv_table(m.get("versions") or {})]
    return "".join(parts)


def _section(key: str, content: str) -> str:
    title = dict(SECTIONS + (ANALYSIS_SECTION, MITIGATION_SECTION, DELEGATES_SECTION, BISECT_SECTION))[key]
    return f'<section id="{esc(key)}"><h2>{esc(title)}</h2>{content}</section>'


def _job(row) -> str:
    return f"{row.variant} / {row.target} / {row.delegate}"


def _job_dict(row: Mapping[str, Any]) -> str:
    return f"{row.get('variant')} / {row.get('target')} / {row.get('delegate')}"


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
