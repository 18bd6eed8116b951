"""``qskew run``: a rerun with the model, variants and reference cached loads no model, computes no
reference and imports no TensorFlow (nor scikit-learn: the built-in dataset is cached); the commands that
read run directories never import them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness
from harness.cli import main
from harness.rundir import read_run
from harness.rundir.layout import REFERENCE_JOB

REPO = Path(harness.__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "tf_keras", "sklearn", "statsmodels")  # what a cached run must not import
# Runs a qskew command line in a fresh interpreter and prints the heavy modules it imported.
PROBE = ("import json, sys\nfrom harness.cli import main\nrc = main(sys.argv[1:])\n"
         "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))\n"
         "print('QSKEW-PROBE ' + json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n" % (HEAVY,))


def experiment(folder: Path, model: Path, delegates: list[str]) -> Path:
    path = folder / f"exp-{'-'.join(delegates)}.toml"
    path.write_text(f'[experiment]\nname = "cached"\n[data]\ndataset = "digits-groups"\n'
                    f'[model]\npath = "{model}"\n[quantize]\nvariants = ["fp32", "int8"]\ncalibration_size = 32\n'
                    f'[run]\ntargets = ["local"]\ndelegates = {json.dumps(delegates)}\n')
    return path


def probe(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    line = [s for s in done.stderr.splitlines() if s.startswith("QSKEW-PROBE ")]
    assert line, done.stderr[-2000:]
    return json.loads(line[-1].split(" ", 1)[1])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A user's .keras model run once with xnnpack: model facts, variants and reference now cached."""
    import keras

    folder = tmp_path_factory.mktemp("cached-run")
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    model.save(folder / "model.keras")
    out = folder / "xnnpack"
    assert main(["run", str(experiment(folder, folder / "model.keras", ["xnnpack"])), "--out", str(out),
                 "--no-progress"]) == 0
    return folder, out


def test_other_delegates_reuse_the_reference(first_run, monkeypatch):
    from harness import reference

    folder, first = first_run

    def fail(*args, **kwargs):
        raise AssertionError("the reference was computed again")

    monkeypatch.setattr(reference, "reference_logits", fail)
    out = folder / "reference"
    assert main(["run", str(experiment(folder, folder / "model.keras", ["reference"])), "--out", str(out),
                 "--no-progress"]) == 0
    again, before = read_run(out), read_run(first)
    np.testing.assert_array_equal(again.logits(*REFERENCE_JOB).values, before.logits(*REFERENCE_JOB).values)
    assert set(again.metrics["delegate"]) == {"reference"}


def test_a_cached_run_imports_no_tensorflow(first_run):
    folder, _ = first_run
    exp = experiment(folder, folder / "model.keras", ["xnnpack", "builtin"])
    result = probe("run", str(exp), "--out", str(folder / "probe"), "--no-progress")
    assert result == {"rc": 0, "heavy": []}
    assert set(read_run(folder / "probe").metrics["delegate"]) == {"xnnpack", "builtin"}


def test_commands_that_read_runs_import_no_tensorflow(first_run):
    folder, run = first_run
    int8 = next(v["path"] for v in read_run(run).manifest["variants"] if v["variant"] == "int8")
    for argv in (["signoff", str(run), "--resamples", "50"], ["report", str(run), "--resamples", "50"],
                 ["compare", str(run), str(run), "--resamples", "50"], ["inspect", int8]):
        result = probe(*argv)
        assert result["heavy"] == [], argv
        assert result["rc"] in (0, 1), argv  # signoff may FAIL the policy; it must not error
