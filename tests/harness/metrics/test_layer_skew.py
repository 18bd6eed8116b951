"""harness/metrics/layer_skew.py: the minority/majority pick and the per-layer skew table."""

import numpy as np

from harness.metrics.layer_skew import SKEW_COLUMNS, minority_majority, skew_table
from harness.rundir import analysis_tables as tables


def test_skew_table_keeps_its_columns_for_one_group():
    layers = tables.frame([{"variant": "int8", "layer": "a", "group": "x", "rmse": 1.0, "snr_db": 3.0}],
                          tables.LAYER_COLUMNS)
    assert skew_table(layers, "x", "y").empty
    assert list(skew_table(layers, "x", "y").columns)[:3] == ["variant", "layer", "order"]


def test_minority_majority_takes_train_counts_then_the_fallback():
    manifest = {"dataset": {"group_counts": {"train": {"b": 5, "a": 5, "c": 9}}}}
    assert minority_majority(manifest, {"x": 1, "y": 2}) == ("a", "c")  # tie broken by name
    assert minority_majority({}, {"x": 3, "y": 2}) == ("y", "x")


def test_skew_table_ranks_by_snr_gap_within_each_variant():
    rows = [{"variant": "int8", "layer": layer, "group": group, "rmse": rmse, "snr_db": snr, "order": order,
             "op": "CONV_2D", "tensor": layer}
            for layer, order, (lo, hi) in (("a", 0, (10.0, 12.0)), ("b", 1, (5.0, 15.0)))
            for group, rmse, snr in (("min", 2.0, lo), ("maj", 1.0, hi))]
    skew = skew_table(tables.frame(rows, tables.LAYER_COLUMNS), "min", "maj")
    assert list(skew.columns) == list(SKEW_COLUMNS)
    assert list(skew["layer"]) == ["b", "a"]
    assert np.allclose(skew["snr_gap_db"], [10.0, 2.0]) and np.allclose(skew["rmse_ratio"], [2.0, 2.0])
