"""``qskew report``: prints the HTML and chart paths; bad --resamples is one error line."""

from __future__ import annotations

import pytest

from harness.cli import main
from support.synthetic_runs import make_run_dir


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """The report tests' run (tests/harness/report/conftest.py): two targets x two delegates, one failed job."""
    sizes = {"majority": 400, "<b>minority & co</b>": 120}
    variants = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "<b>minority & co</b>": (0.5, 1.3)}}
    return make_run_dir(tmp_path_factory.mktemp("report") / "run", sizes=sizes, variants=variants,
                        targets=("local", "pixel7"), delegates=("xnnpack", "builtin"),
                        failed=[("int8", "pixel7", "builtin")])


def test_cli_report(report_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(report_run), "--out", str(out), "--resamples", "20", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}" in printed and printed.count("chart:") == 5
    assert "(20 resamples, seed 4)" in out.read_text(encoding="utf-8")
    assert main(["report", str(report_run), "--resamples", "0"]) == 2
    assert "--resamples must be >= 1" in capsys.readouterr().err
