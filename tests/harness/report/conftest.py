"""Fixtures for the report tests: run directories written by RunWriter from synthetic logits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def load_synthetic():
    """tests/harness/report/synthetic_runs.py, loaded by path once (test folders are not packages)."""
    name = "qskew_test_synthetic_runs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("synthetic_runs.py"))
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def synthetic():
    return load_synthetic()


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, synthetic):
    """Two targets x two delegates, fp32 + int8, one failed job, and a group name that needs escaping."""
    sizes = {"majority": 400, "<b>minority & co</b>": 120}
    variants = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "<b>minority & co</b>": (0.5, 1.3)}}
    return synthetic.make_run_dir(tmp_path_factory.mktemp("report") / "run", sizes=sizes, variants=variants,
                                  targets=("local", "pixel7"), delegates=("xnnpack", "builtin"),
                                  failed=[("int8", "pixel7", "builtin")])
