"""Tabular datasets: columns, one-hot from the train split, unknown categories, group cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness import datasets
from harness.datasets import TableOptions
from harness.errors import DatasetError


def people(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.integers(18, 70, n), "job": rng.choice(["a", "b", "c"], n),
        "sex": np.tile(["F", "M"], n // 2), "race": np.repeat(["x", "y"], n // 2),
        "label": rng.integers(0, 2, n),
        "split": np.tile(["train", "train", "train", "test", "train", "train", "test", "train"], n // 8),
    })


def test_a_csv_with_two_group_columns_becomes_cells_and_one_hot_features(tmp_path):
    path = tmp_path / "people.csv"
    people().to_csv(path, index=False)
    ds = datasets.load(path, TableOptions(label="label", groups=("sex", "race"), intersections=True))
    assert ds.attributes == ("sex", "race") and ds.intersections
    assert set(ds.groups) == {"F\u00d7x", "F\u00d7y", "M\u00d7x", "M\u00d7y"}
    # age (1) + job (3) + sex (2) + race (2): group columns are features unless features are listed
    assert ds.x.shape == (40, 8) and ds.x.dtype == np.float32
    listed = datasets.load(path, TableOptions(label="label", groups=("sex",), features=("age", "job")))
    assert listed.x.shape == (40, 4) and listed.attributes == ("sex",)


def test_an_unknown_test_category_is_an_error_naming_column_and_value_unless_ignored(tmp_path):
    frame = people()
    frame.loc[3, "job"] = "zeta"  # row 3 is a test row
    path = tmp_path / "people.parquet"
    frame.to_parquet(path)
    with pytest.raises(DatasetError, match=r"'job' has the value 'zeta'.*unknown = \"ignore\""):
        datasets.load(path, TableOptions(label="label", groups=("sex",)))
    ds = datasets.load(path, TableOptions(label="label", groups=("sex",), unknown="ignore"))
    row = int(np.flatnonzero(ds.ids == "people-00003")[0])
    assert ds.x[row, 1:4].tolist() == [0.0, 0.0, 0.0]  # job one-hot all zero


def test_a_missing_column_or_group_value_is_named(tmp_path):
    frame = people()
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="no column 'gender'"):
        datasets.load(path, TableOptions(label="label", groups=("gender",)))
    frame.loc[5, "race"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="group column 'race' has 1 missing values"):
        datasets.load(path, TableOptions(label="label", groups=("sex", "race")))


def test_string_labels_become_sorted_codes_and_the_description_says_so(tmp_path):
    frame = people().assign(label=lambda f: np.where(f["label"] == 1, ">50K", "<=50K"))
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    ds = datasets.load(path, TableOptions(label="label"  , groups=("sex",)))
    assert ds.num_classes == 2 and "0=<=50K, 1=>50K" in ds.description
