"""A device that fails mid-sweep loses nothing already finished; rerunning finishes only the rest.

The fault is injected at the one seam between the sweep and the device (``py_runner.run_job``):
the first two jobs run for real, the third raises the TargetError a vanished device would.
"""

import pytest

from harness import config, datasets, rundir
from harness.runners import python as py_runner
from harness.errors import TargetError
from harness.evaluate import ModelSource, evaluate


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


def test_sweep_resumes_where_the_device_dropped(tmp_path, monkeypatch, small_cnn):
    exp = config.from_dict({"quantize": {"variants": ["fp32", "dynamic", "int8", "float16"]}}, source="test")
    data = datasets.load("digits-groups")
    source = ModelSource(small_cnn, {"source": "test", "sha256": "x"})
    out = tmp_path / "run"
    real_run_job, calls = py_runner.run_job, []

    def flaky(*args, **kwargs):
        calls.append(args[1].variant)
        if len(calls) == 3:
            raise TargetError("device went away", device="local")
        return real_run_job(*args, **kwargs)

    monkeypatch.setattr(py_runner, "run_job", flaky)
    with pytest.raises(TargetError, match="device went away"):
        evaluate(exp, data, source, out, progress=False)
    assert rundir.read_run(out).jobs() == [("fp32", "local", "xnnpack"), ("dynamic", "local", "xnnpack")]

    calls.clear()
    evaluate(exp, data, source, out, progress=False)
    assert calls == ["int8", "float16"]  # only the jobs that had not finished
    assert sorted(v for v, _, _ in rundir.read_run(out).jobs()) == ["dynamic", "float16", "fp32", "int8"]
