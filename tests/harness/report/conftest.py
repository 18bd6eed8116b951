"""Fixtures for the report tests: run directories written by RunWriter from synthetic logits."""

from __future__ import annotations

import pytest

from support import synthetic_runs


@pytest.fixture(scope="session")
def synthetic():
    return synthetic_runs


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, synthetic):
    """Two targets x two delegates, fp32 + int8, one failed job, and a group name that needs escaping."""
    sizes = {"majority": 400, "<b>minority & co</b>": 120}
    variants = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "<b>minority & co</b>": (0.5, 1.3)}}
    return synthetic.make_run_dir(tmp_path_factory.mktemp("report") / "run", sizes=sizes, variants=variants,
                                  targets=("local", "pixel7"), delegates=("xnnpack", "builtin"),
                                  failed=[("int8", "pixel7", "builtin")])



SMALL_CELLS = {"F\u00d7A": 300, "F\u00d7B": 60, "M\u00d7A": 400, "M\u00d7B": 90}


@pytest.fixture(scope="module")
def attributes_run(tmp_path_factory):
    """Sex (F, M) and race (A, B) and their cells, two of them below 100 samples; int8 hurts F\u00d7B most,
    int8-qat (a mitigated variant) less."""
    from support.attribute_runs import make_attribute_run

    return make_attribute_run(tmp_path_factory.mktemp("report-attributes") / "run", sizes=SMALL_CELLS)
