"""The QAT child process (harness/mitigate/qat.py), started for real by the host's run_qat.

A user's Keras 3 model is rebuilt in tf_keras from its translated config, fine-tuned with the
group-weighted loss, and exported; a model tf_keras cannot rebuild, and a crash, each come back as
one ModelError naming the model and quoting the process's last lines.
"""

import numpy as np
import pytest

from harness.errors import ModelError
from harness.evaluate import ModelSource
from harness.mitigate import job as jobfiles
from harness.mitigate.job import QatResult
from harness.mitigate.mitigate import qat_job, run_qat
from harness.mitigate.options import MitigationOptions
from harness.mitigate.sampling import group_shares, group_weights
from harness.quantize.calibration import make_calibration

WEIGHTED = MitigationOptions(balanced_sampling=False, group_weighted_loss=True, epochs=2)


def _user_source(model, path="user/tiny.keras"):
    return ModelSource(model, {"source": "file", "path": path, "sha256": "x"})


def test_user_model_is_rebuilt_in_tf_keras_and_trained_with_group_weights(tiny_keras3, digits, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))  # a QAT job cached by an earlier run is not this run's
    train = digits.subset("train")
    calibration = make_calibration(train, size=32, seed=0)
    job = qat_job(_user_source(tiny_keras3), digits, ("out",), WEIGHTED)
    assert job.builder is None and job.kept_layers == ("out",)
    job_dir, cached = run_qat(job, _user_source(tiny_keras3), digits, calibration, WEIGHTED, echo=print)
    assert not cached
    result = QatResult.from_json(jobfiles.read_json(job_dir / jobfiles.RESULT_FILE))
    # the loss weights are N / (G n_g) of the training split's groups, and the epochs are plain
    # shuffles (no balanced sampling): each epoch has the training split's group shares
    assert result.group_weights == pytest.approx(group_weights(train.group))
    assert result.group_weights["faint"] > 1 > result.group_weights["standard"]
    for shares in result.epoch_group_shares:
        assert shares == pytest.approx(group_shares(train.group))
    assert len(result.history["loss"]) == 2
    assert result.kept_layers == ("out",) and result.annotated_layers == ("conv", "flat")
    # the float weights changed where QAT trained, keep their names and shapes
    with np.load(job_dir / jobfiles.QAT_WEIGHTS_FILE, allow_pickle=False) as tuned:
        assert sorted(tuned.files) == ["conv/0", "conv/1", "out/0", "out/1"]
        assert not np.allclose(tuned["conv/0"], tiny_keras3.get_layer("conv").get_weights()[0])
    assert (job_dir / jobfiles.INT8_FILE).stat().st_size > 0
    # a second call finds the finished job in the cache and does not start the process again
    again, cached = run_qat(job, _user_source(tiny_keras3), digits, calibration, WEIGHTED, echo=print)
    assert cached and again == job_dir


def test_a_model_tf_keras_cannot_rebuild_is_one_error_naming_it(digits):
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Resizing(16, 16, name="resize")(inputs)  # Keras 3 config: data_format=...
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    source = _user_source(model, "user/resizing.keras")
    calibration = make_calibration(digits.subset("train"), size=16, seed=0)
    job = qat_job(source, digits, (), WEIGHTED)
    with pytest.raises(ModelError) as err:
        run_qat(job, source, digits, calibration, WEIGHTED, echo=lambda s: None)
    message = str(err.value)
    assert "user/resizing.keras" in message and "exit code 2" in message
    assert "cannot be rebuilt" in message and "Resizing" in message  # the child's last line
    assert "\n" not in message


def test_a_crash_in_the_qat_process_quotes_its_traceback(tiny_keras3, digits, tmp_path):
    from harness.mitigate.mitigate import _run_child, _write_job

    calibration = make_calibration(digits.subset("train"), size=16, seed=0)
    source = _user_source(tiny_keras3, "user/broken.keras")
    job = qat_job(source, digits, (), WEIGHTED)
    _write_job(tmp_path, job, tiny_keras3, digits, calibration)
    (tmp_path / jobfiles.WEIGHTS_FILE).write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(ModelError) as err:
        _run_child(tmp_path, job, timeout_s=300)
    message = str(err.value)
    assert "user/broken.keras" in message and "exit code 1" in message
    quoted = message.split("last output:")[1]
    assert "BadZipFile" in quoted and "^^^" not in quoted  # the traceback's end, without markers


def test_a_qat_process_over_its_time_limit_is_killed_and_named(tiny_keras3, digits, tmp_path):
    from harness.mitigate.mitigate import _run_child, _write_job

    calibration = make_calibration(digits.subset("train"), size=16, seed=0)
    job = qat_job(_user_source(tiny_keras3, "user/slow.keras"), digits, (), WEIGHTED)
    _write_job(tmp_path, job, tiny_keras3, digits, calibration)
    with pytest.raises(ModelError, match=r"QAT of model user/slow.keras did not finish in 0.5 s"):
        _run_child(tmp_path, job, timeout_s=0.5)  # TensorFlow alone takes longer to import
    assert not (tmp_path / jobfiles.RESULT_FILE).exists()
