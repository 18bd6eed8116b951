"""harness/datasets/__init__.py: which loader a spec goes to, and validate_for_model."""

from __future__ import annotations


import pytest

from harness import datasets
from harness.errors import DatasetError


def test_unknown_spec_and_unsupported_file(tmp_path, load_error):
    assert "digits-groups" in load_error("no-such-dataset")
    other = tmp_path / "data.json"
    other.write_text("{}")
    assert "unsupported" in load_error(other)


def test_validate_for_model(digits):
    datasets.validate_for_model(digits, (8, 8, 1), 10)
    datasets.validate_for_model(digits, (None, None, 1), 10)
    with pytest.raises(DatasetError) as info:
        datasets.validate_for_model(digits, (32, 32, 3), 10)
    assert str(info.value) == ("dataset 'digits-groups' has samples of shape (8, 8, 1) "
                               "but the model takes (32, 32, 3)")
    with pytest.raises(DatasetError, match=r"labels outside \[0, 5\)"):
        datasets.validate_for_model(digits, (8, 8, 1), 5)
