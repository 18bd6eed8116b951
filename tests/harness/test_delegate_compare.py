"""The compare-delegates table from a written run directory (no TensorFlow)."""

import math

import numpy as np
import pytest

from harness import rundir
from harness.delegate_compare import delegate_table, format_delegate_table
from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits, Timings

N = 40


def _dataset():
    rng = np.random.default_rng(0)
    return GroupedDataset(name="t", ids=np.array([f"s{i}" for i in range(N)]), x=np.zeros((N, 0), np.uint8),
                          y=rng.integers(0, 3, N).astype(np.int64),
                          group=np.where(np.arange(N) < 10, "minority", "majority"),
                          split=np.full(N, "test"), num_classes=3)


@pytest.fixture
def run_dir(tmp_path):
    test = _dataset()
    z_ref = np.random.default_rng(1).normal(size=(N, 3)).astype(np.float32)
    z_ref[np.arange(N), test.y] += 2
    ref = Logits(test.ids, z_ref)
    z_base = z_ref.copy()
    z_gpu = z_ref.copy()
    z_gpu[0] = [5, -5, -5] if test.y[0] != 0 else [-5, 5, -5]   # the GPU flips one minority sample
    w = rundir.RunWriter(tmp_path / "run")
    w.write_manifest({"config": {}, "dataset": {"sha256": "d"}, "model": {"sha256": "m"}})
    w.add_reference(ref, test)
    for target, delegate, z in [("phone", "gpu", z_gpu), ("phone", "reference", z_base),
                                ("board", "xnnpack", z_base)]:
        run = DeviceRun("int8", target, delegate, "a", logits=z, timings=Timings(per_batch_s=(0.004,)))
        w.add_run(run, score_job(run, ref, test))
    w.add_failure("int8", "phone", "nnapi", "delegate: NNAPI is not available (on device phone)", stage="run")
    return tmp_path / "run", z_gpu, z_base


def test_rows_flips_and_attribution(run_dir):
    path, z_gpu, z_base = run_dir
    table = delegate_table(rundir.read_run(path), "int8", ["reference", "gpu", "nnapi"])
    overall = table[table.group == ""]
    assert list(zip(overall.target, overall.delegate)) == [
        ("board", "xnnpack"), ("phone", "reference"), ("phone", "gpu"), ("phone", "nnapi")]
    gpu = table[(table.delegate == "gpu")].set_index("group")
    assert gpu.loc["minority", "flip_vs_ref"] == pytest.approx(0.1)
    assert gpu.loc["majority", "flip_vs_ref"] == 0.0
    assert gpu.loc["", "flip_vs_ref"] == pytest.approx(1 / N)
    assert gpu.loc["", "max_abs_dlogit_vs_ref"] == pytest.approx(float(np.abs(z_gpu - z_base).max()))
    assert gpu.loc["minority", "drop_delegate"] == pytest.approx(0.1)  # it was right, now wrong
    assert gpu.loc["minority", "drop_quantization"] == pytest.approx(0.0)
    for row in table[table.status == "ok"].itertuples():
        assert row.drop_quantization + row.drop_delegate == pytest.approx(row.acc_drop, abs=1e-12)
    # a device without a reference-kernel job is compared with another device's
    board = table[table.target == "board"].iloc[0]
    assert board.baseline_target == "phone" and board.flip_vs_ref == 0.0
    failed = overall[overall.delegate == "nnapi"].iloc[0]
    assert failed.status == "failed" and "NNAPI" in failed.error and math.isnan(failed.acc)
    text = format_delegate_table(table, "int8")
    assert "FAILED: delegate: NNAPI is not available" in text and "minority" in text


def test_no_job_of_the_variant(run_dir):
    table = delegate_table(rundir.read_run(run_dir[0]), "mixed")
    assert table.empty and "no job of variant 'mixed'" in format_delegate_table(table, "mixed")


def test_the_report_section_shows_the_table_and_the_placement(run_dir):
    from harness.report.optional_sections import delegates as delegates_section

    html = delegates_section(rundir.read_run(run_dir[0]))
    assert "FAILED: delegate: NNAPI is not available" in html
    assert "<td>10.00</td>" in html  # the GPU's minority flip rate vs the reference kernels, in %
    assert "Where the ops ran" not in html  # these synthetic jobs recorded no execution plan


def test_without_any_reference_kernel_job_the_table_says_what_to_add(run_dir):
    run = rundir.read_run(run_dir[0])
    summary = {"runs": [r for r in run.summary["runs"] if r["delegate"] != "reference"]}
    import dataclasses

    table = delegate_table(dataclasses.replace(run, summary=summary), "int8")
    assert (table[table.status == "ok"].baseline_target == "").all()
    assert "add a device that can run them" in format_delegate_table(table, "int8")
    long_error = table[table.status == "failed"].iloc[0].error
    assert long_error.splitlines()[0][:40] in format_delegate_table(table, "int8")


def test_lookalike_device_and_group_names_are_shown_whole(tmp_path):
    from harness.delegate_compare import delegate_table, format_delegate_table
    from harness.rundir import read_run
    from support.run_kit import LOOKALIKE_DEVICES, LOOKALIKE_GROUPS, write_lookalike_run

    run = read_run(write_lookalike_run(tmp_path / "run"))
    text = format_delegate_table(delegate_table(run, "int8", ["xnnpack", "reference"]), "int8")
    for name in LOOKALIKE_GROUPS + LOOKALIKE_DEVICES:
        assert f"{name} " in text, name


SCALE = 0.125


def _stepped_run(path):
    """An int8 variant whose xnnpack job is one output step off on one logit of minority sample 3, and
    an fp32 variant (float outputs) a hair off everywhere."""
    test = _dataset()
    z = (np.random.default_rng(2).integers(-40, 40, (N, 3)) * SCALE).astype(np.float32)
    z_off = z.copy()
    z_off[3, 1] += SCALE
    w = rundir.RunWriter(path)
    out = {"name": "out", "index": 0, "dtype": "int8", "shape": [1, 3], "scale": SCALE, "zero_point": -3}
    w.write_manifest({"config": {}, "dataset": {"sha256": "d"}, "model": {"sha256": "m"},
                      "variants": [{"variant": "int8", "outputs": [out]},
                                   {"variant": "fp32", "outputs": [{**out, "dtype": "float32", "scale": 0.0}]}]})
    ref = Logits(test.ids, z)
    w.add_reference(ref, test)
    for variant, delegate, logits in [("int8", "reference", z), ("int8", "xnnpack", z_off),
                                      ("fp32", "reference", z), ("fp32", "xnnpack", z + np.float32(1e-6))]:
        run = DeviceRun(variant, "local", delegate, "a", logits=logits)
        w.add_run(run, score_job(run, ref, test))
    return rundir.read_run(path)


def test_integer_outputs_are_compared_in_output_steps(tmp_path):
    run = _stepped_run(tmp_path / "run")
    table = delegate_table(run, "int8", ["reference", "xnnpack"])
    xnn = table[table.delegate == "xnnpack"].set_index("group")
    assert xnn.loc["minority", "max_step_diff"] == 1
    assert xnn.loc["minority", "frac_logits_diff"] == pytest.approx(1 / (10 * 3))
    assert xnn.loc["majority", "max_step_diff"] == 0 and xnn.loc["majority", "frac_logits_diff"] == 0
    assert xnn.loc["", "max_step_diff"] == 1 and xnn.loc["", "frac_logits_diff"] == pytest.approx(1 / (N * 3))
    assert xnn.loc["", "max_abs_dlogit_vs_ref"] == pytest.approx(SCALE)
    assert xnn.loc["", "flip_vs_ref"] <= 1 / N
    ref = table[table.delegate == "reference"].set_index("group")
    assert (ref.max_step_diff == 0).all() and (ref.frac_logits_diff == 0).all()
    text = format_delegate_table(table, "int8")
    assert "steps" in text and "logits≠%" in text
    # float outputs: no steps, but every logit differs a little
    fp32 = delegate_table(run, "fp32").set_index(["delegate", "group"])
    assert math.isnan(fp32.loc[("xnnpack", ""), "max_step_diff"])
    assert fp32.loc[("xnnpack", ""), "frac_logits_diff"] == 1.0
    row = next(line for line in format_delegate_table(delegate_table(run, "fp32"), "fp32").splitlines()
               if line.startswith("local") and "xnnpack" in line)
    assert row.split()[9:11] == ["100.00", "-"]  # logits≠% and steps


def test_delegates_csv_declares_the_step_columns(tmp_path):
    run = _stepped_run(tmp_path / "run")
    table = delegate_table(run, "int8")
    table.to_csv(tmp_path / rundir.DELEGATES_FILE, index=False)
    import pandas as pd

    back = pd.read_csv(tmp_path / rundir.DELEGATES_FILE).fillna({"group": ""}).set_index(["delegate", "group"])
    assert back.loc[("xnnpack", "minority"), "max_step_diff"] == 1
    assert back.loc[("xnnpack", "minority"), "frac_logits_diff"] == pytest.approx(1 / 30)


def test_the_report_section_shows_the_step_columns(tmp_path):
    from harness.report.optional_sections import delegates as delegates_section

    html = delegates_section(_stepped_run(tmp_path / "run"))
    assert "logits ≠ ref %" in html and "max steps vs ref" in html
    assert "<td>3.33</td>" in html  # the minority's one logit in 10 x 3, in %
