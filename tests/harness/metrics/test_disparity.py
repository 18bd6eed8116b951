"""The disparity record: one field list with groups.DISPARITY_COLUMNS, plain values, NaN as null."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pandas as pd

from harness.metrics.disparity import Disparity
from harness.metrics.groups import DISPARITY_COLUMNS, JOB_COLUMNS, disparity, group_metrics


def test_the_columns_are_the_job_then_the_fields_in_order():
    assert list(DISPARITY_COLUMNS) == list(JOB_COLUMNS) + [f.name for f in dataclasses.fields(Disparity)]
    assert DISPARITY_COLUMNS["n"] == "int64" and DISPARITY_COLUMNS["worst_group"] == "str"
    assert DISPARITY_COLUMNS["drop_gap"] == "float64"


def test_from_row_gives_plain_python_values_and_to_json_nulls_nan():
    row = {k: np.float64(0.25) for k in DISPARITY_COLUMNS} | {"n": np.int64(12), "worst_group": "a",
                                                                "best_group": "b", "psi_group": "a",
                                                                "small_groups": "", "psi": np.float64("nan")}
    record = Disparity.from_row(row)
    assert type(record.n) is int and type(record.acc) is float and type(record.worst_group) is str
    as_json = record.to_json()
    assert list(as_json) == [f.name for f in dataclasses.fields(Disparity)]
    assert as_json["psi"] is None and as_json["n"] == 12 and as_json["acc"] == 0.25
    assert math.isnan(record.psi)


def test_from_row_reads_a_row_of_disparity():
    rows = []
    for group, n, correct in (("a", 120, 0.9), ("b", 100, 0.7)):
        k = int(n * correct)
        rows.append(pd.DataFrame({"variant": "int8", "target": "t", "delegate": "d", "id": range(n),
                                  "group": group, "correct_ref": True, "correct": [True] * k + [False] * (n - k)}))
    per_sample = pd.concat(rows, ignore_index=True)
    for column in ("loss_ref", "loss", "logit_var_ref", "logit_var", "margin_ref", "margin", "kl", "logit_mse"):
        per_sample[column] = 0.0
    per_sample["flip"] = ~per_sample["correct"]
    table = disparity(group_metrics(per_sample))
    record = Disparity.from_row(table.iloc[0])
    assert record.n == 220 and record.worst_group == "b" and record.best_group == "a"
    assert record.drop_gap == table.iloc[0]["drop_gap"]


def test_importing_the_record_does_not_import_pandas():
    code = "import sys, harness.metrics.disparity, harness.rundir.entry; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
