"""Hostile names run correctly and execute nothing, over real ADB to a simulated device.

Every name a user controls carries spaces, both quotes, ``;``, ``$()``, backticks and a newline,
each with a command that would create a canary file if any shell ever interpreted it: the model's
file and folder, the dataset file, sample ids and group names, the device's work folder, the run
directory.
"""

import numpy as np
import pytest

from harness import cli, rundir


CANARY = "QSKEW-CANARY"  # `cd` with no argument goes home: the device's root, or the host user's HOME


def _hostile() -> str:
    return f"a b'c\"d;cd;touch {CANARY};$(cd;touch {CANARY})`cd;touch {CANARY}`\ne"


@pytest.mark.slow
def test_hostile_names_everywhere(tmp_path):
    bad = _hostile()
    folder = tmp_path / f"models {bad}"
    folder.mkdir()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model_path = folder / f"model {bad}.keras"
    model.save(model_path)

    rng = np.random.default_rng(0)
    n = 40
    ids = np.array([f"{bad}-{i}" for i in range(n)], dtype=str)
    groups = np.array([f"group {bad}" if i % 3 == 0 else "other $(x)" for i in range(n)], dtype=str)
    data = tmp_path / f"data {bad}.npz"
    with open(data, "wb") as f:
        np.savez(f, x=rng.integers(0, 256, (n, 4, 4, 1)).astype(np.uint8), y=rng.integers(0, 3, n),
                 group=groups, id=ids, split=np.array(["train", "test"] * (n // 2)))

    devices = tmp_path / "devices.toml"  # the work folder is relative to the simulated device's root
    devices.write_text(f'[[device]]\nname = "sim"\nreach = "simulated"\nworkdir = {_toml(f"data/local/tmp/q {bad}")}\n')
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'[data]\ndataset = {_toml(str(data))}\n[model]\nname = ""\npath = {_toml(str(model_path))}\n'
                          '[quantize]\nvariants = ["fp32", "int8"]\ncalibration_size = 8\n'
                          '[run]\ntargets = ["sim"]\n')
    out = tmp_path / f"run {bad}"
    assert cli.main(["run", str(experiment), "--devices", str(devices), "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    assert sorted(run.jobs()) == [("fp32", "sim", "xnnpack"), ("int8", "sim", "xnnpack")]
    assert set(run.predictions.id) == set(ids[1::2]) and f"group {bad}" in set(run.metrics.group)
    from pathlib import Path

    from harness.farm.connect import simulated_root

    for home in (simulated_root("sim"), Path.home(), Path.cwd(), tmp_path):
        assert not (home / CANARY).exists(), home


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
