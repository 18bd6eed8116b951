"""A variant that cannot be built is recorded as failed, with the converter's message; the others run."""

import keras
import numpy as np

from harness import config, datasets, rundir
from harness.evaluate import ModelSource, evaluate


def _model_with_a_sin_layer():
    """Digits-shaped model whose SIN op the converter cannot quantize to 16x8 (int8 converts fine)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10),
                              keras.layers.Lambda(keras.ops.sin)])
    model.compile()
    return model


def test_int16x8_fails_to_convert_and_the_sweep_goes_on(tmp_path):
    exp = config.from_dict({"quantize": {"variants": ["int8", "int16x8"], "calibration_size": 32}},
                           source="test")
    out = tmp_path / "run"
    evaluate(exp, datasets.load("digits-groups"), ModelSource(_model_with_a_sin_layer(), {"source": "test"}),
             out, progress=False)
    run = rundir.read_run(out)
    by_variant = {r["variant"]: r for r in run.summary["runs"]}
    assert by_variant["int8"]["status"] == "ok"
    failed = by_variant["int16x8"]
    assert failed["status"] == "failed" and failed["stage"] == "convert"
    assert "SIN" in failed["error"]
    assert set(run.metrics["variant"]) == {"int8"}
    variants = {v["variant"]: v for v in run.manifest["variants"]}
    assert variants["int16x8"]["error"] and variants["int8"]["error"] is None
    assert np.isfinite(run.metrics["acc"]).all()
