"""Fixtures for the dataset tests: the built-in dataset, loaded once, and a loader's error text."""

from __future__ import annotations

import pytest

from harness import datasets
from harness.errors import DatasetError


@pytest.fixture(scope="session")
def digits():
    return datasets.load("digits-groups")


@pytest.fixture
def load_error():
    """load_error(spec) -> the text of the DatasetError ``datasets.load(spec)`` raises."""
    def error(path) -> str:
        with pytest.raises(DatasetError) as info:
            datasets.load(path)
        return str(info.value)
    return error
