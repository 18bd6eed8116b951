"""harness/runners/registry.py: the one table of runner kinds, and what an unknown kind says."""

import pytest

from harness.errors import ConfigError
from harness.farm import inventory
from harness.runners import registry


def test_the_known_kinds_and_the_inventory_read_one_table():
    assert list(registry.RUNNERS) == ["python", "benchmark_model"]
    assert inventory.RUNNER_KINDS == tuple(registry.RUNNERS)
    assert all(registry.get(name).name == name for name in registry.RUNNERS)


def test_an_unknown_kind_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown runner kind 'onnx'; known: python, benchmark_model"):
        registry.get("onnx")
