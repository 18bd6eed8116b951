"""``qskew suggest-mixed``: the recipe it picks, and the whole loop on a tiny model's run."""

import json
import re
import shutil

import pandas as pd
import pytest

from harness.rundir import analysis_tables as tables
from harness.metrics.layer_skew import SKEW_COLUMNS
from harness.analysis.suggest import choose_recipe, suggest_mixed
from harness.errors import ConfigError
from harness.quantize.inspect import OpInfo


def _skew(rows):
    return pd.DataFrame([dict(zip(SKEW_COLUMNS, r)) for r in rows], columns=list(SKEW_COLUMNS))


def _op(index, name, outputs):
    return OpInfo(index=index, op_name=name, outputs=tuple(outputs), output_dtypes=("float32",),
                  input_dtypes=("float32",))


FLOAT_OPS = (_op(0, "CONV_2D", ["m/conv_1/Relu;m/conv_1/BiasAdd"]), _op(1, "MAX_POOL_2D", ["m/pool_1/MaxPool"]),
             _op(2, "FULLY_CONNECTED", ["m/dense_1/MatMul;m/dense_1/BiasAdd"]),
             _op(3, "FULLY_CONNECTED", ["StatefulPartitionedCall:0"]))
SKEW = _skew([  # variant, layer, order, op, rmse_min, rmse_maj, ratio, snr_min, snr_maj, gap, tensor
    ("int8", "pool", 1, "MAX_POOL_2D", 1, 1, 1, 30, 40, 10.0, "m/pool_1/MaxPool"),
    ("int8", "dense", 2, "FULLY_CONNECTED", 1, 1, 1, 30, 38, 8.0, "m/dense_1/MatMul;m/dense_1/BiasAdd"),
    ("int8", "conv", 0, "CONV_2D", 1, 1, 1, 30, 35, 5.0, "m/conv_1/Relu;m/conv_1/BiasAdd"),
    ("int8", "logits", 3, "FULLY_CONNECTED", 1, 1, 1, 30, 31, 1.0, "StatefulPartitionedCall:0"),
])


def test_recipe_takes_the_most_skewed_weight_ops_as_exact_scopes():
    recipe = choose_recipe(SKEW, 2, FLOAT_OPS)
    assert [d["layer"] for d in recipe.layers] == ["dense", "conv"]          # pool is no weight op
    assert recipe.matched_ops == ("m/conv_1/Relu;m/conv_1/BiasAdd;", "m/dense_1/MatMul;m/dense_1/BiasAdd;")
    assert re.search(recipe.regex, "m/dense_1/MatMul;m/dense_1/BiasAdd;")
    assert not re.search(recipe.regex, "m/pool_1/MaxPool;")


def test_recipe_falls_back_to_the_layer_name_when_the_float_model_names_tensors_otherwise():
    renamed = (_op(0, "CONV_2D", ["other/conv_3/Relu"]), _op(2, "FULLY_CONNECTED", ["other/dense_7/MatMul"]))
    recipe = choose_recipe(SKEW, 1, renamed)
    assert recipe.regex == r"(^|[/;])dense(_\d+)?/"
    assert recipe.matched_ops == ("other/dense_7/MatMul;",)


def test_recipe_that_selects_nothing_is_refused():
    with pytest.raises(ConfigError, match="select no op of the float model"):
        choose_recipe(SKEW, 1, (_op(0, "CONV_2D", ["x/y"]),))
    with pytest.raises(ConfigError, match="weight op"):
        choose_recipe(SKEW[SKEW.op == "MAX_POOL_2D"], 1, FLOAT_OPS)


def test_suggest_mixed_end_to_end(tiny_run, tmp_path):
    from harness.rundir import read_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    s = suggest_mixed(run, top=1, out=tmp_path / "suggested", progress=False)
    assert len(s.recipe.layers) == 1 and s.recipe.layers[0]["op"] in ("CONV_2D", "FULLY_CONNECTED")
    assert len(s.recipe.matched_ops) == 1
    new = read_run(s.run_dir)
    assert [r["variant"] for r in new.summary["runs"]] == ["int8", "int16x8", "mixed"]
    assert all(r["status"] == "ok" for r in new.summary["runs"])
    mixed = next(v for v in new.manifest["variants"] if v["variant"] == "mixed")
    assert mixed["recipe"]["selection"] == {"mode": "regex", "regex": s.recipe.regex}
    assert [d["scope"] for d in mixed["recipe"]["layers_16bit"]] == list(s.recipe.matched_ops)
    assert any("int16" in op["output_dtypes"] for op in mixed["recipe"]["int16_activation_ops"])
    record = tables.read_suggestion(s.run_dir)
    assert record["regex"] == s.recipe.regex and record["source_run"] == str(run)
    assert {r["variant"] for r in record["results"]} == {"int8", "int16x8", "mixed"}
    overall = s.results[s.results["group"] == ""]
    assert overall["latency_ms_per_sample"].gt(0).all()
    assert (s.results["acc_drop_lo"] <= s.results["acc_drop"]).all()
    assert (s.results["acc_drop"] <= s.results["acc_drop_hi"]).all()
    json.dumps(record)  # plain JSON
    check = s.layer_check
    assert set(check["variant"]) == {"int8", "int16x8", "mixed"}
    chosen = s.recipe.layers[0]["layer"]
    at = check[check["layer"] == chosen].set_index("variant")
    # the raised layer's own output is finer in mixed than in int8 (16-bit activations there)
    assert at.loc["mixed", "snr_majority_db"] > at.loc["int8", "snr_majority_db"]
    assert record["layer_check"] and record["layer_check"][0]["variant"] == "int8"
