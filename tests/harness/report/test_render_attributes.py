"""The report of a run with several group attributes: a chart and a table per attribute, cells marked."""

from __future__ import annotations

import re

import pytest

from harness.metrics.stats import run_stats
from harness.report.render import SECTIONS, build_report
from harness.rundir import read_run

ATTRIBUTES = ("race", "sex", "sex\u00d7race")   # table order: attributes by name, then the crossing
SLUGS = ("race", "sex", "sex_x_race")


@pytest.fixture(scope="module")
def report(attributes_run):
    return build_report(attributes_run, n_resamples=200, seed=1)


def _section(html: str, key: str) -> str:
    return re.search(f'<section id="{key}">(.*?)</section>', html, re.S).group(1)


def _subsections(html: str, key: str) -> dict[str, str]:
    """{h3 heading: its content} of one section."""
    parts = re.split(r"<h3>(.*?)</h3>", _section(html, key))
    return dict(zip(parts[1::2], parts[2::2]))


def _rows(table_html: str) -> list[list[str]]:
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table_html)]


def test_every_chart_once_per_attribute(report):
    charts = ("accuracy", "drops", "logits", "flips", "calibration")
    assert sorted(report.images) == sorted(f"{c}-{s}" for c in charts for s in SLUGS)
    assert all(data.startswith(b"\x89PNG") for data in report.images.values())
    for key, _ in SECTIONS:
        assert f'<section id="{key}">' in report.html


@pytest.mark.parametrize("key", ["accuracy", "drops", "logits", "flips", "calibration"])
def test_each_section_has_a_subsection_per_attribute_and_the_cells_are_marked(report, key):
    headings = list(_subsections(report.html, key))
    assert headings == ["race", "sex", "sex\u00d7race: intersectional cells"]
    cells = _subsections(report.html, key)["sex\u00d7race: intersectional cells"]
    assert "never FAIL" in cells
    assert f'alt="{key}-sex_x_race chart"' in cells


def test_group_tables_hold_each_attributes_groups_and_they_sum_to_n(report, attributes_run):
    tables = _subsections(report.html, "accuracy")
    expected = {"race": {"A": 700, "B": 150}, "sex": {"F": 360, "M": 490},
                "sex\u00d7race: intersectional cells": {"F\u00d7A": 300, "F\u00d7B": 60, "M\u00d7A": 400, "M\u00d7B": 90}}
    for heading, groups in expected.items():
        rows = [r for r in _rows(tables[heading]) if r[0] == "int8 / local / xnnpack"]
        assert {r[1]: int(r[2]) for r in rows} == {"(all)": 850, **groups}
    small = [r for r in _rows(tables["sex\u00d7race: intersectional cells"]) if r[1] in ("F\u00d7B", "M\u00d7B")]
    assert small and all("n&lt;100" in r[-1] for r in small)


def test_summary_has_one_row_per_job_and_attribute(report, attributes_run):
    rows = _rows(_section(report.html, "summary"))
    assert rows[0][:2] == ["job (variant / target / delegate)", "attribute"]
    int8 = {r[1]: r for r in rows[1:] if r[0] == "int8 / local / xnnpack"}
    assert list(int8) == ["race", "sex", "sex\u00d7race (cells)"]
    stats = run_stats(read_run(attributes_run), n_resamples=200, seed=1)
    worst = stats.disparity.set_index(["variant", "attribute"]).loc[("int8", "sex"), "worst_group"]
    assert int8["sex"][4] == worst == "F"
    assert int8["sex\u00d7race (cells)"][4] == "F\u00d7B"


def test_mitigation_section_names_groups_with_their_attribute(report):
    rows = _rows(_section(report.html, "mitigation"))
    assert rows[0][:4] == ["group", "n", "int8 (before: int8 (PTQ))", "int8-qat (after: int8 (QAT))"]
    assert [r[:2] for r in rows[1:]] == [["(all)", "850"], ["race=A", "700"], ["race=B", "150"], ["sex=F", "360"],
                                         ["sex=M", "490"], ["sex\u00d7race=F\u00d7A", "300"],
                                         ["sex\u00d7race=F\u00d7B", "60"], ["sex\u00d7race=M\u00d7A", "400"],
                                         ["sex\u00d7race=M\u00d7B", "90"]]


def test_one_attribute_report_keeps_one_chart_per_section(report_run):
    plain = build_report(report_run, n_resamples=50, seed=1)
    assert sorted(plain.images) == ["accuracy", "calibration", "drops", "flips", "logits"]
    assert "<h3>" not in _section(plain.html, "accuracy")
