"""``qskew run``: what it prints when a device fails, and when every job failed.

The fault is injected at the one seam between the sweep and the device (``py_runner.run_job``).
"""

import pytest

from harness import cli, rundir
from harness.errors import TargetError
from harness.runners import python as py_runner
from harness.runners.common import failed_run


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[experiment]\nname = "t"\n[quantize]\nvariants = ["fp32", "dynamic"]\n')
    return path


def test_a_failing_device_still_prints_what_finished_and_the_run_directory(experiment, tmp_path, monkeypatch,
                                                                            capsys):
    real_run_job, calls = py_runner.run_job, []

    def flaky(*args, **kwargs):
        calls.append(args[1].variant)
        if len(calls) == 2:
            raise TargetError("device went away", device="local")
        return real_run_job(*args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", flaky)
    out = tmp_path / "run"
    assert cli.main(["run", str(experiment), "--out", str(out), "--no-progress"]) == 2
    printed = capsys.readouterr()
    assert "[local] device went away" in printed.err
    assert f"run directory: {out}" in printed.out
    assert "fp32      local    xnnpack   (all)" in printed.out  # the job that finished, in the table
    assert rundir.read_run(out).jobs() == [("fp32", "local", "xnnpack")]


def test_a_run_in_which_every_job_failed_exits_non_zero(experiment, tmp_path, monkeypatch, capsys):
    def broken(target, artifact, test, delegate, **kwargs):
        return failed_run(target, artifact, delegate, "invoke: the model crashed")

    monkeypatch.setattr(py_runner, "run_job", broken)
    out = tmp_path / "run"
    assert cli.main(["run", str(experiment), "--out", str(out), "--no-progress"]) == 2
    printed = capsys.readouterr()
    assert "every job failed (2)" in printed.err
    assert "FAILED (run): invoke: the model crashed" in printed.out
    assert f"run directory: {out}" in printed.out
