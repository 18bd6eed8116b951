"""``qskew compare-delegates`` end to end: the demo's model, the local target and the simulated ADB
device, real runtime; the drop's two parts add up, a delegate that cannot load is a row, and
``--repeat`` records each job's run-to-run noise."""

import json
import math

import pandas as pd
import pytest

from harness import cli, rundir
from support.vulkan import use_swiftshader

DELEGATES = ["xnnpack", "reference", "builtin"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("delegates")
    out = folder / "run"
    # a simulated device of its own: other tests count what reaches the built-in one's file system
    (folder / "devices.toml").write_text('[[device]]\nname = "simulated"\nreach = "simulated"\n'
                                         'workdir = "data/local/tmp/qskew-delegates"\n')
    code = cli.main(["compare-delegates", "--delegates", ",".join(DELEGATES), "--device", "local",
                     "--device", "simulated", "--devices", str(folder / "devices.toml"),
                     "--repeat", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_the_table_covers_every_device_and_delegate(compared, capsys):
    table = pd.read_csv(compared / rundir.DELEGATES_FILE, keep_default_na=False)
    overall = table[table.group == ""]
    assert sorted(zip(overall.target, overall.delegate)) == sorted(
        (t, d) for t in ("local", "simulated") for d in DELEGATES)
    assert (overall.status == "ok").all()
    assert set(table.group) == {"", "faint", "standard"}
    # the reference-kernel job is its own baseline: no flips, no logit difference
    ref = overall[overall.delegate == "reference"]
    assert (ref.flip_vs_ref.astype(float) == 0).all() and (ref.max_abs_dlogit_vs_ref.astype(float) == 0).all()
    assert (overall.latency_ms_per_sample.astype(float) > 0).all()


def test_quantization_part_plus_delegate_part_is_the_drop_per_group(compared):
    run = rundir.read_run(compared)
    m = run.metrics
    assert not m[["drop_quantization", "drop_delegate"]].isna().any().any()
    total = m.drop_quantization + m.drop_delegate
    assert ((total - m.acc_drop).abs() < 1e-12).all()
    # the quantization part is one number per device and group: the reference kernels' drop
    for (target, group), part in m.groupby(["target", "group"]):
        ref = part[part.delegate == "reference"].acc_drop.iloc[0]
        assert (part.drop_quantization - ref).abs().max() < 1e-12, (target, group)


def test_repeat_records_run_to_run_noise(compared):
    run = rundir.read_run(compared)
    for entry in run.summary["runs"]:
        noise = entry["repeat"]
        assert noise["runs"] == 2 and len(noise["latency_ms_per_sample"]) == 2
        assert noise["identical"] and noise["max_abs_logit_diff"] == 0.0  # CPU kernels are deterministic


def test_placement_is_in_the_run_directory(compared):
    placement = rundir.read_run(compared).placement
    xnn = placement[(placement.target == "simulated") & (placement.delegate == "xnnpack")]
    assert len(xnn) > 0 and (xnn.source == "interpreter").all() and "delegate" in set(xnn.on)
    ref = placement[placement.delegate == "reference"]
    assert set(ref.on) == {"cpu"}


def test_a_delegate_that_cannot_load_is_a_row_not_a_crash(tmp_path, capfd):
    out = tmp_path / "run"
    missing = tmp_path / "no such" / "libqskew_missing.so"
    code = cli.main(["compare-delegates", "--delegates", f"xnnpack,external:{missing}", "--device", "local",
                     "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    doc = json.loads(capfd.readouterr().out)
    rows = {(r["delegate"], r["group"]): r for r in doc["rows"]}
    failed = rows[(f"external:{missing}", "")]
    assert failed["status"] == "failed" and "libqskew_missing.so" in failed["error"]
    assert "device local" in failed["error"]
    assert rows[("reference", "")]["status"] == "ok"  # added as the baseline
    assert not math.isnan(rows[("xnnpack", "faint")]["drop_delegate"])


GPU_DELEGATES = ["reference", "xnnpack", "gpu", "gpu-fp32"]


@pytest.mark.slow  # a sweep of four delegates with fixed-batch copies: ~40 s on 2 cores
def test_the_gpu_on_swiftshader_with_its_attribution_split_and_precision(tmp_path, capfd, monkeypatch):
    use_swiftshader(monkeypatch, tmp_path)
    out = tmp_path / "run"
    code = cli.main(["compare-delegates", "--delegates", ",".join(GPU_DELEGATES), "--variant", "fp32",
                     "--device", "local", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capfd.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("device"))
    assert "quant_pp" in header and "deleg_pp" in header and "precision" in header
    rows = {line.split()[1]: line for line in printed.splitlines() if line.startswith("local ")}
    assert sorted(rows) == sorted(GPU_DELEGATES)
    assert rows["gpu"].endswith("fp16/unknown") and rows["gpu-fp32"].endswith("fp32/unknown")
    table = pd.read_csv(out / rundir.DELEGATES_FILE, keep_default_na=False)
    gpu = table[table.delegate.isin(["gpu", "gpu-fp32"])]
    assert (gpu.status == "ok").all() and set(gpu.delegate_applied) == {"gpu", "gpu-fp32"}
    assert set(gpu.group) == {"", "faint", "standard"}
    # SwiftShader computes in fp32: the GPU is within rounding of the reference kernels in every group
    assert (gpu.max_abs_dlogit_vs_ref.astype(float) < 1e-4).all()
    assert ((gpu.drop_quantization + gpu.drop_delegate - gpu.acc_drop).abs() < 1e-12).all()
    placement = rundir.read_run(out).placement
    on_gpu = placement[placement.delegate.isin(["gpu", "gpu-fp32"])]
    assert set(on_gpu.on) == {"delegate"} and set(on_gpu.source) == {"compiled_model"}


def test_a_gpu_job_without_a_vulkan_device_fails_at_stage_delegate_and_the_sweep_finishes(tmp_path, capfd,
                                                                                          monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-such-icd.json"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    out = tmp_path / "run"
    code = cli.main(["compare-delegates", "--delegates", "gpu,xnnpack", "--variant", "fp32", "--device", "local",
                     "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    capfd.readouterr()
    runs = {r["delegate"]: r for r in rundir.read_run(out).summary["runs"]}
    assert runs["gpu"]["status"] != "ok" and runs["gpu"]["stage"] == "delegate"
    assert "No adapters found" in runs["gpu"]["error"] and "VK_ICD_FILENAMES" in runs["gpu"]["error"]
    assert runs["xnnpack"]["status"] == "ok" and runs["reference"]["status"] == "ok"


def test_metrics_step_columns_agree_with_the_delegates_table(compared):
    """metrics.csv's step columns (computed when the run is read) say what delegates.csv says."""
    table = pd.read_csv(compared / rundir.DELEGATES_FILE, keep_default_na=False)
    m = rundir.read_run(compared).metrics.set_index(["target", "delegate", "group"])
    for row in table.itertuples(index=False):
        mine = m.loc[(row.target, row.delegate, row.group)]
        for column in ("max_step_diff", "frac_logits_diff"):
            theirs = float(getattr(row, column)) if getattr(row, column) != "" else math.nan
            assert (math.isnan(theirs) and math.isnan(mine[column])) or math.isclose(
                mine[column], theirs, abs_tol=1e-12), (row.target, row.delegate, row.group, column)
    int8 = m.xs("reference", level="delegate")
    assert (int8.max_step_diff == 0).all()  # the reference-kernel job is its own baseline
