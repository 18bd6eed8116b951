"""``qskew run`` and ``qskew compare-delegates`` with ``--device board-aarch64``: the board as any
other device of a command, LiteRT's real aarch64 build under qemu-user (slow).

Lean on purpose: the demo's model (cached) and its int8 variant, one job for ``run`` and two for
``compare-delegates`` (builtin, plus the reference kernels it adds as the baseline); most of the
time is Python and LiteRT starting under qemu. The board is the session's cached one
(tests/support/board_env.py: under CI a board that cannot be built or entered FAILS).
"""

import math

import pandas as pd
import pytest

from harness import cli, rundir

pytestmark = pytest.mark.slow
BOARD = "board-aarch64"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp("board-commands") / "int8.toml"
    path.write_text('[experiment]\nname = "board-int8"\n\n[data]\ndataset = "digits-groups"\n\n'
                    '[model]\nname = "small_cnn"\nseed = 0\n\n[quantize]\nvariants = ["int8"]\n\n'
                    '[run]\ntargets = ["local"]\ndelegates = ["xnnpack"]\nnum_threads = 1\nbatch_size = 64\n')
    return path


def test_run_on_the_board_device(aarch64_board, experiment, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", str(experiment), "--device", BOARD, "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    assert run.jobs() == [("int8", BOARD, "xnnpack")] and not run.jobs("failed")
    entry = run.summary["runs"][0]
    assert (entry["runtime"], entry["runtime_version"], entry["delegate_applied"]) == (
        "ai_edge_litert", "2.3.0", "xnnpack")
    board = run.manifest["targets"][BOARD]
    assert board["abi"] == "arm64-v8a" and board["cpu_model"] == "ARM Cortex-A76"
    m = run.metrics
    assert set(m.group) == {"", "faint", "standard"} and (m.acc > 0.5).all()
    assert m["max_step_diff"].isna().all()  # no reference-kernel job of int8 in this run


def test_compare_delegates_on_the_board_device(aarch64_board, experiment, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["compare-delegates", str(experiment), "--device", BOARD, "--delegates", "builtin",
                     "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert BOARD in printed and "builtin" in printed
    table = pd.read_csv(out / rundir.DELEGATES_FILE, keep_default_na=False)
    assert sorted(set(zip(table.target, table.delegate))) == [(BOARD, "builtin"), (BOARD, "reference")]
    assert (table.status == "ok").all() and set(table.group) == {"", "faint", "standard"}
    # metrics.csv's step columns say what delegates.csv says, group by group
    m = rundir.read_run(out).metrics
    for row in table.itertuples(index=False):
        mine = m[(m.delegate == row.delegate) & (m.group == row.group)].iloc[0]
        for column in ("max_step_diff", "frac_logits_diff"):
            assert math.isclose(getattr(mine, column), float(getattr(row, column)), abs_tol=1e-12), (row, column)
    ref = table[table.delegate == "reference"]
    assert (ref.max_step_diff.astype(float) == 0).all()


def test_an_armv7l_board_runs_the_int8_variant_with_tflite_runtime(armv7l_board, tmp_path):
    """The issue's armv7l requirement, as a farm device: the demo's int8 variant on tflite-runtime
    2.14's reference kernels; its builtin kernels are refused before they crash, naming the cause
    (harness.targets.board.faults)."""
    experiment = tmp_path / "armv7l.toml"
    experiment.write_text('[experiment]\nname = "armv7l-int8"\n\n[data]\ndataset = "digits-groups"\n\n'
                          '[model]\nname = "small_cnn"\nseed = 0\n\n[quantize]\nvariants = ["int8"]\n\n'
                          '[run]\ntargets = ["local"]\ndelegates = ["reference", "builtin"]\n'
                          'num_threads = 1\nbatch_size = 64\n')
    out = tmp_path / "run"
    assert cli.main(["run", str(experiment), "--device", "board-armv7l", "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    assert run.jobs() == [("int8", "board-armv7l", "reference")]
    entry = {r["delegate"]: r for r in run.summary["runs"]}
    assert (entry["reference"]["runtime"], entry["reference"]["runtime_version"]) == ("tflite_runtime", "2.14.0")
    assert run.manifest["targets"]["board-armv7l"]["abi"] == "armeabi-v7a"
    overall = run.metrics[run.metrics.scope == "overall"].iloc[0]
    assert overall.n == 719 and overall.acc > 0.9
    refused = entry["builtin"]
    assert refused["status"] == "failed" and refused["stage"] == "profile"
    assert "per-channel" in refused["error"] and "gemmlowp" in refused["error"] and "'reference'" in refused["error"]
