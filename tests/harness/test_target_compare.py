"""The board-vs-host table from a written run directory (no TensorFlow)."""

import math

import numpy as np

from harness import rundir
from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits
from harness.target_compare import format_target_table, output_scales, target_table

N = 20
SCALE = 0.25


def _dataset():
    return GroupedDataset(name="t", ids=np.array([f"s{i}" for i in range(N)]), x=np.zeros((N, 0), np.uint8),
                          y=np.zeros(N, np.int64), group=np.where(np.arange(N) < 5, "minority", "majority"),
                          split=np.full(N, "test"), num_classes=3)


def _run(tmp_path):
    test = _dataset()
    z = (np.random.default_rng(0).integers(-20, 20, (N, 3)) * SCALE).astype(np.float32)
    z_board = z.copy()
    z_board[1, 2] += 2 * SCALE   # a minority sample, two steps away
    z_board[10, 0] += SCALE      # a majority sample, one step
    w = rundir.RunWriter(tmp_path / "run")
    outputs = [{"name": "out", "index": 0, "dtype": "int8", "shape": [1, 3], "scale": SCALE, "zero_point": 0}]
    w.write_manifest({"config": {}, "dataset": {"sha256": "d"}, "model": {"sha256": "m"},
                      "variants": [{"variant": "int8", "outputs": outputs},
                                   {"variant": "fp32", "outputs": [{**outputs[0], "scale": 0.0}]}]})
    ref = Logits(test.ids, z)
    w.add_reference(ref, test)
    jobs = [("int8", "local", "builtin", z), ("int8", "board-aarch64", "builtin", z_board),
            ("fp32", "local", "xnnpack", z), ("fp32", "board-aarch64", "xnnpack", z + np.float32(1e-6)),
            ("int8", "local", "reference", z)]  # no board job: not paired
    for variant, target, delegate, logits in jobs:
        run = DeviceRun(variant, target, delegate, "a", logits=logits, runtime="ai_edge_litert",
                        runtime_version="2.3.0")
        w.add_run(run, score_job(run, ref, test))
    return rundir.read_run(tmp_path / "run")


def test_pairs_the_same_job_on_both_targets_in_output_steps(tmp_path):
    run = _run(tmp_path)
    assert output_scales(run) == {"int8": SCALE, "fp32": None}
    table = target_table(run, "local", "board-aarch64")
    assert sorted(set(zip(table.variant, table.delegate))) == [("fp32", "xnnpack"), ("int8", "builtin")]
    int8 = table[table.variant == "int8"].set_index("group")
    assert int8.loc["", "max_step_diff"] == 2 and int8.loc["", "frac_logits_diff"] == 2 / (3 * N)
    assert int8.loc["minority", "max_step_diff"] == 2 and int8.loc["majority", "max_step_diff"] == 1
    assert int8.loc["", "host_runtime"] == "ai_edge_litert 2.3.0"
    fp32 = table[(table.variant == "fp32") & (table.group == "")].iloc[0]
    assert math.isnan(fp32.max_step_diff) and 0 < fp32.max_abs_dlogit < 1e-5
    text = format_target_table(table, "local", "board-aarch64")
    assert "board-aarch64 against local" in text and "ai_edge_litert 2.3.0 / ai_edge_litert 2.3.0" in text


def test_nothing_to_pair_says_so(tmp_path):
    run = _run(tmp_path)
    assert "no variant finished on both" in format_target_table(target_table(run, "local", "phone"), "local",
                                                                   "phone")


def test_long_group_names_are_shown_whole():
    import pandas as pd

    from harness.target_compare import TABLE_COLUMNS

    common = {"variant": "int8", "delegate": "builtin", "n": 5, "flip_rate": 0.0, "frac_logits_diff": 0.1,
              "max_step_diff": 1.0, "max_abs_dlogit": 0.2, "host_runtime": "a 1", "device_runtime": "b 2"}
    groups = ["", "Asian-Pac-Islander-women", "Asian-Pac-Islander-men"]  # alike in their first 12 letters
    table = pd.DataFrame([{**common, "group": g} for g in groups], columns=list(TABLE_COLUMNS))
    text = format_target_table(table, "local", "board-aarch64")
    assert "Asian-Pac-Islander-women " in text and "Asian-Pac-Islander-men " in text
