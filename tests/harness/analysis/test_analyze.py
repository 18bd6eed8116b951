"""``qskew analyze`` on a real run directory: analysis.csv/layers.csv, and the errors it must give."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from harness.rundir import analysis_tables as tables
from harness.analysis.analyze import AnalyzeOptions, analyze, sample_index
from harness.errors import DatasetError, ModelError

DOCUMENTED = ["variant", "group", "n", "loss", "logit_variance", "grad_norm", "hessian_top_eig", "hessian_trace",
              "iterations", "probes", "seed"]
QUICK = AnalyzeOptions(iterations=4, probes=3, seed=5, max_samples_per_group=60)


@pytest.fixture(scope="module")
def analyzed(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("analyzed") / "run"
    shutil.copytree(tiny_run, run)
    return run, analyze(run, QUICK)


def _copy(tiny_run, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_analysis_csv_has_the_documented_columns_and_one_row_per_model_and_group(analyzed):
    run, result = analyzed
    table = pd.read_csv(run / tables.ANALYSIS_FILE, keep_default_na=False)
    assert list(table.columns)[:len(DOCUMENTED)] == DOCUMENTED
    assert list(table.columns) == list(tables.ANALYSIS_COLUMNS)
    assert sorted(zip(table["variant"], table["group"])) == sorted(
        (v, g) for v in ("reference", "int8") for g in ("common", "rare"))  # fp32 skipped by default
    assert (table["error"] == "").all()
    for column in ("loss", "logit_variance", "grad_norm", "hessian_top_eig", "hessian_trace", "hessian_trace_se"):
        assert np.isfinite(table[column]).all() and (table[column] != 0).all(), column
    assert set(table["probes"]) == {3} and set(table["seed"]) == {5} and table["iterations"].between(1, 4).all()
    assert table.loc[table.variant == "reference", "weight_delta_norm"].eq(0).all()
    assert table.loc[table.variant == "int8", "weight_delta_norm"].gt(0).all()
    assert table["n"].max() <= 60
    pd.testing.assert_frame_equal(tables.read_analysis(run), result.analysis)


def test_layers_csv_and_the_skew_ranking(analyzed):
    run, result = analyzed
    layers = tables.read_layers(run)
    assert list(layers.columns) == list(tables.LAYER_COLUMNS)
    assert set(layers["variant"]) == {"int8"} and set(layers["group"]) == {"common", "rare"}
    assert np.isfinite(layers["rmse"]).all() and np.isfinite(layers["snr_db"]).all()
    assert (result.minority, result.majority) == ("rare", "common")
    gaps = result.skew["snr_gap_db"].to_numpy()
    assert list(gaps) == sorted(gaps, reverse=True)
    row = result.skew.iloc[0]
    pair = layers[(layers.layer == row.layer)].set_index("group")
    assert row.snr_gap_db == pytest.approx(pair.loc["common", "snr_db"] - pair.loc["rare", "snr_db"])


def test_a_changed_model_is_one_clear_error_naming_it(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path, lambda m: m["model"].update(sha256="0" * 64))
    path = json.loads((run / "manifest.json").read_text())["model"]["path"]
    with pytest.raises(ModelError, match=rf"model {path} has changed since the run: sha256 .* recorded in "):
        analyze(run, QUICK)


def test_a_missing_model_is_one_clear_error_naming_it(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path, lambda m: m["model"].update(path=str(tmp_path / "gone.keras")))
    with pytest.raises(ModelError, match=r"model .*gone\.keras named by .*manifest\.json is missing"):
        analyze(run, QUICK)


def test_a_changed_dataset_is_refused(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path, lambda m: m["dataset"].update(sha256="f" * 64))
    with pytest.raises(DatasetError, match=r"tinydigits\.npz' has changed since the run"):
        analyze(run, QUICK)


def test_a_variant_whose_file_is_gone_is_reported_not_crashed(tiny_run, tmp_path):
    def drop_int8(manifest):
        for v in manifest["variants"]:
            if v["variant"] == "int8":
                v["path"] = str(tmp_path / "nowhere.tflite")
    run = _copy(tiny_run, tmp_path, drop_int8)
    result = analyze(run, AnalyzeOptions(variants=("fp32", "int8"), iterations=2, probes=2, max_samples_per_group=20))
    table = result.analysis.set_index(["variant", "group"])
    assert table.loc[("int8", "rare"), "error"].endswith("nowhere.tflite is missing (variant cache cleared?)")
    assert math.isnan(table.loc[("int8", "rare"), "loss"])
    assert table.loc[("fp32", "rare"), "error"] == "" and table.loc[("fp32", "rare"), "weight_delta_norm"] < 1e-5
    assert set(result.layers["variant"]) == {"fp32"}


def test_cli_analyze_prints_json(tiny_run, tmp_path, capfd):
    from harness.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code = main(["analyze", str(run), "--json", "--power-iterations", "2", "--probes", "2",
                 "--max-samples-per-group", "30"])
    out = json.loads(capfd.readouterr().out)
    assert code == 0
    assert out["minority"] == "rare" and {r["variant"] for r in out["analysis"]} == {"reference", "int8"}
    assert (run / tables.ANALYSIS_FILE).is_file() and (run / tables.LAYERS_FILE).is_file()


def test_sample_index_caps_each_group_and_is_seeded():
    groups = np.array(["a"] * 50 + ["b"] * 5)
    idx = sample_index(groups, 10, seed=3)
    assert np.array_equal(idx, np.sort(idx)) and np.sum(groups[idx] == "a") == 10 and np.sum(groups[idx] == "b") == 5
    assert np.array_equal(idx, sample_index(groups, 10, seed=3))
    assert not np.array_equal(idx, sample_index(groups, 10, seed=4))


def test_the_analysis_table_shows_lookalike_group_names_whole():
    import pandas as pd

    from harness.analysis.analyze import format_analysis
    from support.run_kit import LOOKALIKE_GROUPS

    row = dict(variant="int8-balanced-calibration", n=50, error="", loss=0.3, excess_loss=0.01, logit_variance=2.0,
               grad_norm=0.1, hessian_top_eig=3.0, hessian_trace=9.0, hessian_trace_se=0.5, iterations=20)
    text = format_analysis(pd.DataFrame([{**row, "group": g} for g in LOOKALIKE_GROUPS]))
    for name in LOOKALIKE_GROUPS + ("int8-balanced-calibration",):
        assert f"{name} " in text, name
