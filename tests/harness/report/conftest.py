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


CELL_SIZES = {"F\u00d7A": 300, "F\u00d7B": 60, "M\u00d7A": 400, "M\u00d7B": 90}


@pytest.fixture(scope="module")
def attributes_run(tmp_path_factory, synthetic):
    """Two group attributes, sex (F, M) and race (A, B), and their cells; int8 hurts the F\u00d7B cell most."""
    variants = {"fp32": {}, "int8": {"F\u00d7A": (0.9, 0.4), "F\u00d7B": (0.4, 1.6), "M\u00d7A": (0.9, 0.4),
                                     "M\u00d7B": (0.8, 0.6)}}
    return synthetic.make_run_dir(tmp_path_factory.mktemp("report-attributes") / "run", sizes=CELL_SIZES,
                                  variants=variants, attributes=("sex", "race"), intersections=True)
