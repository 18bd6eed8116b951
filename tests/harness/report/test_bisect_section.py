"""The report's bisect section: present once RUN_DIR/bisect/bisect.csv exists, its group names
escaped, with the per-layer chart inlined as a PNG."""

from __future__ import annotations

import pandas as pd

from harness.records.bisect import BISECT_DIR, BISECT_FILE, FILE_COLUMNS
from harness.report.bisect_section import bisect_section
from harness.report.render import build_report


def _write_bisect(run_dir, group: str) -> None:
    rows = []
    for sample, g in (("s0", group), ("s1", "majority")):
        for order, (tensor, op, diff) in enumerate((("m/in", "INPUT", 0), ("m/conv/Relu", "CONV_2D", 1),
                                                     ("m/out", "FULLY_CONNECTED", 2))):
            rows.append({"sample": sample, "group": g, "order": order, "tensor": tensor, "tensor_index": order,
                         "op": op, "node": order - 1, "options": "", "weights": "per-channel" if order else "",
                         "dtype": "int8", "unit": "steps", "max_diff": float(diff), "mean_diff": diff / 4,
                         "frac_diff": 0.25 if diff else 0.0, "exceeds": diff > 0, "first": order == 1,
                         "on_a": "cpu", "partition": -1, "job_a": "int8/pixel7/builtin",
                         "job_b": "int8/local/reference"})
    folder = run_dir / BISECT_DIR
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=list(FILE_COLUMNS)).to_csv(folder / BISECT_FILE, index=False)


def test_no_section_without_bisect_csv(report_run):
    assert bisect_section(report_run) == ""


def test_the_section_names_the_first_differing_layer_per_group(report_run):
    _write_bisect(report_run, "<b>minority & co</b>")
    try:
        html = build_report(report_run, n_resamples=50, seed=1).html
    finally:
        (report_run / BISECT_DIR / BISECT_FILE).unlink()
    section = html[html.index('<section id="bisect">'):]
    section = section[:section.index("</section>")]
    assert "&lt;b&gt;minority &amp; co&lt;/b&gt;" in section and "<b>minority" not in section
    assert "conv/Relu" in section and "CONV_2D" in section and "per-channel" in section
    assert "int8/pixel7/builtin against int8/local/reference" in section
    assert 'src="data:image/png;base64,' in section
    assert '<a href="#bisect">' in html
