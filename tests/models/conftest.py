"""Fixtures for the built-in model tests: the digits dataset and a temporary qskew cache."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from harness.paths import CACHE_ENV


@pytest.fixture(scope="session")
def digits():
    from harness import datasets

    return datasets.load("digits-groups")


@pytest.fixture(scope="module")
def tmp_cache(tmp_path_factory):
    """A fresh QSKEW_CACHE_DIR for the module, so nothing is read from or written to ~/.cache."""
    folder = tmp_path_factory.mktemp("qskew-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(folder))
        yield folder
