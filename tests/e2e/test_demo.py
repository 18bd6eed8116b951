"""The whole pipeline through the CLI: real training, real converter, real runtime, local target.

One demo run (all six variants, ``conftest.demo_run``) is shared by the tests; it takes a few
seconds once the small CNN is trained (which itself takes a few seconds on 2 cores).
"""

import json

import numpy as np
import pandas as pd

from harness import cli, rundir
from harness.metrics.groups import group_metrics

ALL = ["fp32", "dynamic", "float16", "int8", "int16x8", "mixed"]


def test_demo_writes_the_manifest_and_one_part_per_job_with_all_six_variants(demo_run, capsys):
    assert (demo_run / rundir.MANIFEST_FILE).is_file()
    for name in rundir.layout.PART_DIRS:
        assert (demo_run / name).is_dir(), name
    for name in ("predictions", "metrics", "summary"):  # every job finished: reference + six parts
        assert len(list((demo_run / name).glob("0*"))) == len(ALL) + (name == "predictions"), name
    run = rundir.read_run(demo_run)
    jobs = run.jobs()
    assert sorted(v for v, _, _ in jobs) == sorted(ALL)
    assert {(t, d) for _, t, d in jobs} == {("local", "xnnpack")}
    groups = set(run.metrics.loc[run.metrics["scope"] == "group", "group"])
    assert groups == {"faint", "standard"}
    # the manifest records calibration shares, versions and what each variant really is
    manifest = run.manifest
    shares = manifest["calibration"]["group_shares"]
    assert set(shares) == {"faint", "standard"} and abs(sum(shares.values()) - 1) < 1e-9
    assert manifest["versions"]["ai-edge-litert"] and manifest["dataset"]["sha256"]
    io = {v["variant"]: (v["inputs"][0]["dtype"], v["outputs"][0]["dtype"]) for v in manifest["variants"]}
    assert io["int8"] == ("int8", "int8") and io["mixed"] == ("int8", "int8") and io["fp32"] == ("float32", "float32")


def test_demo_prints_the_per_group_table_and_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), "--variants", "fp32,int8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "faint" in printed and "standard" in printed and "int8" in printed
    assert f"run directory: {out}" in printed


def test_metrics_recomputed_from_predictions_equal_metrics_csv(demo_run):
    run = rundir.read_run(demo_run)
    for job in run.jobs():
        recomputed = group_metrics(run.per_sample(*job)).reset_index(drop=True)
        stored = run.metrics[(run.metrics["variant"] == job[0]) & (run.metrics["target"] == job[1])
                             & (run.metrics["delegate"] == job[2])].reset_index(drop=True)
        pd.testing.assert_frame_equal(recomputed, stored, check_exact=False, rtol=1e-12, atol=1e-12)


def test_fp32_variant_matches_the_keras_reference_closely(demo_run):
    run = rundir.read_run(demo_run)
    ref = run.logits(*rundir.REFERENCE_JOB).values
    fp32 = run.logits("fp32", "local", "xnnpack").values
    assert np.abs(ref - fp32).max() < 1e-3
    assert (ref.argmax(1) == fp32.argmax(1)).mean() > 0.995


def test_rerun_into_the_same_directory_redoes_nothing(demo_run, capsys):
    assert cli.main(["demo", "--out", str(demo_run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("already in the run directory, skipped") == len(ALL)
    assert len(rundir.read_run(demo_run).jobs()) == len(ALL)


def test_json_output_is_one_parseable_document(tmp_path, capfd):
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out), "--variants", "int8", "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)  # fd-level: native code's prints must not land here
    assert doc["run_dir"] == str(out)
    assert [r["variant"] for r in doc["summary"]["runs"]] == ["int8"]


def test_inspect_and_convert_commands(tmp_path, capfd):
    out = tmp_path / "variants"
    assert cli.main(["convert", "--variants", "int8,fp32", "--out", str(out), "--no-progress"]) == 0
    assert (out / "int8.tflite").is_file() and (out / "fp32.tflite").is_file()
    capfd.readouterr()
    assert cli.main(["inspect", str(out / "int8.tflite"), "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
    assert cli.main(["inspect", str(out / "int8.tflite")]) == 0
    assert "FULLY_CONNECTED" in capfd.readouterr().out


def test_truncated_tflite_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken model.tflite"
    good = tmp_path / "variants"
    assert cli.main(["convert", "--variants", "fp32", "--out", str(good), "--no-progress"]) == 0
    data = (good / "fp32.tflite").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert cli.main(["inspect", str(bad)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and err[0].startswith("qskew: error:")


def test_dataset_without_groups_is_one_clear_error_and_writes_nothing(tmp_path, capsys):
    npz = tmp_path / "no_groups.npz"
    np.savez(npz, x=np.zeros((20, 8, 8, 1), np.uint8), y=np.zeros(20, np.int64))
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[data]\ndataset = "{npz.name}"\n[quantize]\nvariants = ["int8"]\n')
    out = tmp_path / "run"
    assert cli.main(["run", str(exp), "--out", str(out), "--no-progress"]) == cli.EXIT_ERROR
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qskew: error:")]
    assert len(errors) == 1 and "group" in errors[0] and str(npz) in errors[0]
    assert not out.exists()


def test_wrong_sample_shape_is_one_clear_error(tmp_path, capsys):
    npz = tmp_path / "big_images.npz"
    n = 30
    np.savez(npz, x=np.zeros((n, 16, 16, 1), np.uint8), y=np.arange(n) % 10,
             group=np.array(["a", "a", "b", "b"] * 8)[:n], split=np.array(["train", "test"] * (n // 2)))
    assert cli.main(["convert", "--variants", "fp32", "--out", str(tmp_path / "v"), "--no-progress"]) == 0
    from harness import datasets
    from models.train import cached_model_path

    keras_file = cached_model_path("small_cnn", datasets.load("digits-groups"))  # the demo's trained CNN
    assert keras_file is not None
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[data]\ndataset = "{npz.name}"\n[model]\npath = "{keras_file}"\n')
    capsys.readouterr()
    assert cli.main(["run", str(exp), "--out", str(tmp_path / "run"), "--no-progress"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "(16, 16, 1)" in err and "(8, 8, 1)" in err
