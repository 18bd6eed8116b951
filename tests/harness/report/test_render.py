"""The HTML report: self-contained, every section present, text escaped, charts written as PNG."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from harness.report.render import SECTIONS, build_report, write_report
from harness.rundir import read_run, report_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Links(HTMLParser):
    """Collects every src/href attribute, the section ids and the text content."""

    def __init__(self):
        super().__init__()
        self.links, self.ids, self.tags, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data"):
                self.links.append(value)
            if name == "id":
                self.ids.append(value)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def files(report_run):
    return write_report(report_run, n_resamples=200, seed=1)


@pytest.fixture(scope="module")
def page(files):
    parser = _Links()
    parser.feed(files.html.read_text(encoding="utf-8"))
    return parser


def test_report_is_self_contained(files, page):
    assert files.html == report_dir(files.html.parents[1]) / "report.html"
    external = [link for link in page.links if not (link.startswith("data:image/png;base64,") or link.startswith("#"))]
    assert external == []
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert "url(" not in files.html.read_text(encoding="utf-8")  # no CSS fetches either
    images = [link for link in page.links if link.startswith("data:")]
    assert len(images) == 5
    for link in images:
        assert base64.b64decode(link.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_report_has_every_section(page):
    assert [key for key, _ in SECTIONS] == [i for i in page.ids]
    text = " ".join(page.text)
    for _, title in SECTIONS:
        assert title in text
    for needle in ("int8 / pixel7 / xnnpack", "ai_edge_litert", "2.3.0", "m" * 64, "Failed jobs",
                   "McNemar", "balanced", "Linux <x86_64>"):
        assert needle in text, needle


def test_text_from_the_run_is_escaped(files, page):
    html = files.html.read_text(encoding="utf-8")
    assert "<b>minority" not in html
    assert "&lt;b&gt;minority &amp; co&lt;/b&gt;" in html
    assert "b" not in page.tags  # the group name did not become markup
    assert "Linux &lt;x86_64&gt;" in html


def test_charts_are_saved_next_to_the_page(files):
    names = sorted(p.name for p in files.pngs)
    assert names == sorted(f"report-{n}.png" for n in ("accuracy", "drops", "logits", "flips", "calibration"))
    for png in files.pngs:
        assert png.parent == files.html.parent and png.read_bytes().startswith(PNG_MAGIC)
        assert png.stat().st_size > 5000


def test_out_option_and_numbers_match_the_run(report_run, tmp_path):
    out = tmp_path / "mail" / "skew.html"
    files = write_report(report_run, out, n_resamples=50, seed=0)
    assert files.html == out and all(p.name.startswith("skew-") for p in files.pngs)
    run = read_run(report_run)
    worst = [r for r in run.summary["runs"] if r["status"] == "ok" and r["variant"] == "int8"][0]
    html = out.read_text(encoding="utf-8")
    assert f"{100 * worst['worst_group_drop']:+.2f} [" in html  # the summary shows the stored drop


def test_report_of_a_run_without_finished_jobs(synthetic, tmp_path):
    run_dir = synthetic.make_run_dir(tmp_path / "run", variants={"int8": {}}, failed=[("int8", "local", "xnnpack")])
    report = build_report(run_dir, n_resamples=10)
    assert "No job finished" in report.html and "Failed jobs" in report.html
    assert set(report.images) == {"calibration"}
    assert re.search(r'src="(?!data:)', report.html) is None


def test_analysis_section_appears_only_when_analyze_wrote_its_files(report_run, tmp_path):
    import shutil

    from harness.rundir import analysis_tables as tables
    from harness.report.render import ANALYSIS_SECTION

    run = tmp_path / "run"
    shutil.copytree(report_run, run, ignore=shutil.ignore_patterns("report"))
    minority = "<b>minority & co</b>"
    analysis = tables.frame([
        {"variant": v, "group": g, "n": 10, "loss": 0.5 + i, "logit_variance": 2.0, "grad_norm": 0.25,
         "hessian_top_eig": 7.5 + i, "hessian_trace": 31.0, "iterations": 9, "probes": 30, "seed": 0,
         "hessian_trace_se": 1.5, "excess_loss": 0.0, "weight_delta_norm": 0.1, "excess_loss_bound": 0.2}
        for v in ("reference", "int8") for i, g in enumerate(("majority", minority))], tables.ANALYSIS_COLUMNS)
    layers = tables.frame([
        {"variant": "int8", "layer": "dense_9", "group": g, "rmse": 0.01, "snr_db": snr, "n": 10, "order": 0,
         "op": "FULLY_CONNECTED", "dtype": "int8", "tensor": "m/dense_9/MatMul"}
        for g, snr in (("majority", 44.25), (minority, 37.5))], tables.LAYER_COLUMNS)
    tables.write_analysis(run, analysis)
    tables.write_layers(run, layers)
    page = _Links()
    html = build_report(run, n_resamples=50).html
    page.feed(html)
    keys = [key for key, _ in SECTIONS]
    assert page.ids == keys[:-1] + [ANALYSIS_SECTION[0]] + keys[-1:]
    text = " ".join(page.text)
    for needle in (ANALYSIS_SECTION[1], "7.5", "31 ± 1.5", "dense_9", "+6.75", "44.25", "37.50",
                   "activations, inputs and logits stay float"):
        assert needle in text, needle
    assert "<b>minority" not in html and "&lt;b&gt;minority &amp; co&lt;/b&gt;" in html
    assert "#analysis" in page.links


def test_mitigation_section_shows_each_group_before_and_after(tmp_path):
    import pandas as pd

    from harness.metrics.stats import compute_stats
    from harness.report.render import MITIGATION_SECTION
    from harness.rundir import read_run
    from support.synthetic_runs import make_run_dir

    plain = build_report(make_run_dir(tmp_path / "plain"), n_resamples=50).html
    assert f'id="{MITIGATION_SECTION[0]}"' not in plain  # no mitigated variant: no section
    variants = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "minority": (0.45, 1.5)},
                "int8-qat": {"majority": (0.95, 0.2), "minority": (0.9, 0.3)}}
    run_dir = make_run_dir(tmp_path / "mitigated", variants=variants)
    page = _Links()
    page.feed(build_report(run_dir, n_resamples=50).html)
    keys = [key for key, _ in SECTIONS]
    assert page.ids == keys[:-1] + [MITIGATION_SECTION[0]] + keys[-1:]
    text = " ".join(page.text)
    assert "int8 (before: int8 (PTQ))" in text and "int8-qat (after: int8 (QAT))" in text
    run = read_run(run_dir)
    stats = compute_stats(pd.concat([run.per_sample(*job) for job in run.jobs("ok")], ignore_index=True),
                          n_resamples=50)
    row = stats.groups[(stats.groups.variant == "int8-qat") & (stats.groups.group == "minority")].iloc[0]
    assert f"{100 * row.acc_drop:+.2f} [{100 * row.acc_drop_lo:+.2f}, {100 * row.acc_drop_hi:+.2f}]" in text


def test_logits_section_shows_the_step_columns_against_the_reference_kernels(synthetic, tmp_path):
    run_dir = synthetic.make_run_dir(tmp_path / "run", sizes={"a": 200, "b": 120},
                                     variants={"int8": {"a": (0.9, 0.4), "b": (0.5, 1.3)}},
                                     delegates=("xnnpack", "reference"))
    files = write_report(run_dir, n_resamples=50, seed=0)
    logits = files.html.read_text(encoding="utf-8").split('id="logits"')[1].split("</section>")[0]
    assert "logits ≠ ref. kernels %" in logits and "max steps" in logits
    m = read_run(run_dir).metrics
    row = m[(m.delegate == "xnnpack") & (m.group == "b")].iloc[0]
    assert 0 < row.frac_logits_diff and f"<td>{100 * row.frac_logits_diff:.2f}</td>" in logits
