"""Several devices of an inventory run side by side; one failing device loses nobody's results.

Two local devices (child processes with their own work folders) stand in for two boards; device
"b" first has an interpreter that cannot run the runner, then a working one.
"""

import sys

import pytest

from harness import config, datasets, rundir
from harness.errors import TargetError
from harness.evaluate import ModelSource, evaluate


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


def _inventory(path, python_b):
    path.write_text(f"""
[[device]]
name = "a"
reach = "local"
workdir = "{path.parent / 'dev-a'}"
labels = {{ board = "x" }}

[[device]]
name = "b"
reach = "local"
python = "{python_b}"
workdir = "{path.parent / 'dev-b'}"
delegates = ["xnnpack"]
labels = {{ board = "x" }}
""")


def test_two_devices_one_fails_then_the_rerun_finishes_it(tmp_path, small_cnn):
    devices = tmp_path / "devices.toml"
    _inventory(devices, "/bin/false")
    exp = config.from_dict({"quantize": {"variants": ["fp32", "int8"]},
                            "run": {"targets": ["board=x"], "devices_file": str(devices),
                                    "delegates": ["xnnpack", "reference"]}}, source="test")
    data = datasets.load("digits-groups")
    source = ModelSource(small_cnn, {"source": "test", "sha256": "x"})
    out = tmp_path / "run"
    lines = []
    with pytest.raises(TargetError) as info:
        evaluate(exp, data, source, out, progress=False, echo=lines.append)
    assert info.value.device == "b" and "/bin/false" in str(info.value)
    # b was unreachable (its interpreter cannot even say its version); a finished all four jobs
    assert sorted(rundir.read_run(out).jobs()) == [("fp32", "a", "reference"), ("fp32", "a", "xnnpack"),
                                                     ("int8", "a", "reference"), ("int8", "a", "xnnpack")]
    assert any(line.startswith("device b: unreachable") for line in lines)

    _inventory(devices, sys.executable)
    lines.clear()
    evaluate(exp, data, source, out, progress=False, echo=lines.append)
    run = rundir.read_run(out)
    assert sorted(j for j in run.jobs() if j[1] == "b") == [("fp32", "b", "xnnpack"), ("int8", "b", "xnnpack")]
    assert sum("already in the run directory" in line for line in lines) == 4
    assert "  b: does not offer delegate reference (inventory), skipped" in lines
    assert run.manifest["targets"]["b"]["inventory"]["delegates"] == ["xnnpack"]
    # the same model, runtime and delegate on both devices: identical predictions
    preds = run.predictions
    a = preds[(preds.variant == "int8") & (preds.target == "a") & (preds.delegate == "xnnpack")]
    b = preds[(preds.variant == "int8") & (preds.target == "b") & (preds.delegate == "xnnpack")]
    assert list(a.pred) == list(b.pred)


def test_a_runner_crashing_on_one_device_mid_sweep_spares_the_other(tmp_path, small_cnn):
    crashing = tmp_path / "python-that-crashes"  # answers the version probe, dies on the runner
    crashing.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && exec {sys.executable} "$@"\necho boom >&2\nexit 3\n')
    crashing.chmod(0o755)
    devices = tmp_path / "devices.toml"
    _inventory(devices, crashing)
    exp = config.from_dict({"quantize": {"variants": ["fp32", "int8"]},
                            "run": {"targets": ["a", "b"], "devices_file": str(devices)}}, source="test")
    out = tmp_path / "run"
    with pytest.raises(TargetError) as info:
        evaluate(exp, datasets.load("digits-groups"), ModelSource(small_cnn, {"source": "test", "sha256": "x"}),
                 out, progress=False)
    assert info.value.device == "b" and "boom" in str(info.value)
    assert sorted(rundir.read_run(out).jobs()) == [("fp32", "a", "xnnpack"), ("int8", "a", "xnnpack")]
