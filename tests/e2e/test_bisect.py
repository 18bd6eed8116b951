"""``qskew bisect`` on the demo run (local target): a planted one-step nudge of one layer's weights
is found at exactly that layer for every sample, through XNNPACK (so through the promoted model copy);
a job on the benchmark_model runner, an unknown job and a missing model file are refused by name."""

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.bisect.run import BisectOptions, bisect, run_job
from harness.errors import ArtifactError, ConfigError
from harness.rundir import read_run
from support.planted import nudge_weights

NUDGED_NODE = 7  # the demo CNN's dense_1 (FULLY_CONNECTED): after two convs, a pool and a reshape


@pytest.mark.parametrize("delegate", ["xnnpack"])
def test_a_planted_nudge_is_found_at_exactly_its_layer_for_every_sample(demo_run, tmp_path, capsys, delegate):
    run = read_run(demo_run)
    variant = next(v for v in run.manifest["variants"] if v["variant"] == "int8")
    planted = tmp_path / "nudged.tflite"
    nudged_tensor = nudge_weights(Path(variant["path"]), NUDGED_NODE, planted)
    job = f"int8/local/{delegate}"
    code = cli.main(["bisect", str(demo_run), "--job", job, "--against", job, "--samples", "10",
                     "--model-a", str(planted), "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "out" / "bisect.csv")
    firsts = table[table["first"]]
    assert table["sample"].nunique() == 20 and len(firsts) == 20  # every sample differs somewhere
    assert set(firsts["tensor_index"]) == {nudged_tensor}
    assert set(firsts["op"]) == {"FULLY_CONNECTED"}
    before = table[table["order"] < firsts["order"].iloc[0]]
    assert (before["max_diff"] == 0).all() and len(before)  # nothing differs before it, on any sample
    assert set(table["on_a"]) <= {"input", "cpu", "delegate"}  # the promoted copy hides nothing
    assert "10 of 10 samples first differ at dense_1/MatMul (FULLY_CONNECTED, int8, per-channel)" in printed


def test_a_benchmark_model_job_and_bad_inputs_are_refused_by_name(demo_run, tmp_path):
    run = read_run(demo_run)
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "bm"\nreach = "local"\nrunner = "benchmark_model"\n'
                       'benchmark_model = "standin"\n')
    manifest = json.loads(json.dumps(run.manifest))
    manifest["config"]["run"]["devices_file"] = str(devices)
    fake = type("Run", (), {"manifest": manifest, "path": demo_run})()
    with pytest.raises(ConfigError, match="benchmark_model binary cannot write intermediate tensors"):
        run_job(fake, ("int8", "bm", "xnnpack"), tmp_path / "m.tflite", None, print)
    with pytest.raises(ConfigError, match="not a finished job"):
        bisect(demo_run, BisectOptions("int8/bm/xnnpack", "int8/local/xnnpack"))
    with pytest.raises(ArtifactError, match="--model-a .*nope.tflite: no such file"):
        bisect(demo_run, BisectOptions("int8/local/xnnpack", "int8/local/xnnpack", "2", model_a=tmp_path / "nope.tflite"))
