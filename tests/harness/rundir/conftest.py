"""Fixtures of the run-directory tests."""

import pytest

from support.run_kit import write_small_run


@pytest.fixture
def written(tmp_path):
    """A run directory with the reference, two finished jobs and one failed job."""
    return write_small_run(tmp_path / "run")
