"""harness/evaluate.py with the models users really bring (issue 15 items 10 and 11): a .tflite file
as the model (float: its own FP32 reference; quantized: no FP32 reference), outputs that are
probabilities already, and a model that rescales its input when the dataset rescales it too.

Each test builds a small real model (tf.keras), converts it with the real converter and runs the
real pipeline on the local target (the device runner on LiteRT), on 300 digits.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness import config, datasets, rundir  # noqa: E402
from harness.evaluate import evaluate  # noqa: E402
from harness.model_source import ModelSource  # noqa: E402

N_SAMPLES = 300
pytestmark = pytest.mark.slow  # each test converts and runs jobs on the local target (~10-20 s)


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory) -> Path:
    """300 sklearn digits (uint8, preprocess x / 16), groups 'a' and 'b'."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=data.images[:N_SAMPLES].astype(np.uint8)[..., None],
             y=data.target[:N_SAMPLES].astype(np.int64),
             group=np.where(rng.random(N_SAMPLES) < 0.3, "a", "b").astype(str),
             split=np.where(rng.random(N_SAMPLES) < 0.6, "train", "test").astype(str),
             preprocess_scale=np.float64(1 / 16))
    return path


@pytest.fixture(scope="module")
def dataset(dataset_file):
    return datasets.load(dataset_file)


def _trained(dataset, *layers, name="m", from_logits=True):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), *layers, keras.layers.Flatten(),
                              keras.layers.Dense(10, activation=None if from_logits else "softmax")], name=name)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    train = dataset.subset("train")
    model.fit(train.preprocess.apply(train.x), train.y, epochs=20, batch_size=16, verbose=0)
    return model


def _tflite(model, path: Path, dataset=None) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if dataset is not None:  # integer-only
        x = dataset.subset("train").preprocess.apply(dataset.subset("train").x)[:32]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def _experiment(dataset_file, model_path, variants):
    return config.from_dict({"experiment": {"name": "inputs"}, "data": {"dataset": str(dataset_file)},
                             "model": {"path": str(model_path)},
                             "quantize": {"variants": variants, "calibration_size": 32},
                             "run": {"batch_size": 32}}, source="test")


def _run(exp, dataset, source, out):
    evaluate(exp, dataset, source, out, progress=False)
    return rundir.read_run(out)


def test_a_float_tflite_is_its_own_fp32_reference_and_the_conversions_are_skipped(dataset, dataset_file, tmp_path):
    from harness.commands._common import model_source

    path = _tflite(_trained(dataset, keras_conv()), tmp_path / "float.tflite")
    exp = _experiment(dataset_file, path, ["fp32", "int8", "dynamic"])
    source = model_source(exp, dataset, False, print)  # what `qskew run` does with [model] path
    assert source.tflite == path and source.facts.form == "tflite-float"
    run = _run(exp, dataset, source, tmp_path / "run")
    assert [r["variant"] for r in run.summary["runs"]] == ["fp32"] and run.jobs("ok") == [("fp32", "local", "xnnpack")]
    assert set(run.manifest["skipped_variants"]) == {"int8", "dynamic"}
    assert "needs the Keras model" in run.manifest["skipped_variants"]["int8"]
    assert run.manifest["model"]["form"] == "tflite-float" and run.manifest["model"]["fp32_reference"]
    assert any("reference kernels (FP32)" in n for n in run.manifest["notes"])
    assert any("skipped variants int8, dynamic" in n for n in run.manifest["notes"])
    overall = run.metrics[(run.metrics["variant"] == "fp32") & (run.metrics["scope"] == "overall")].iloc[0]
    assert overall["acc_ref"] > 0.5 and abs(overall["acc"] - overall["acc_ref"]) <= 0.01  # XNNPACK vs reference kernels


def test_a_quantized_tflite_has_no_fp32_reference_and_the_tables_say_so(dataset, dataset_file, tmp_path, capsys):
    from types import SimpleNamespace

    from harness.commands._common import show_run

    path = _tflite(_trained(dataset, keras_conv()), tmp_path / "int8.tflite", dataset)
    run = _run(_experiment(dataset_file, path, ["fp32", "int8"]), dataset, ModelSource.from_tflite(path),
               tmp_path / "run")
    assert run.jobs("ok") == [("tflite", "local", "xnnpack")]
    assert run.manifest["model"]["form"] == "tflite-quantized" and not run.manifest["model"]["fp32_reference"]
    assert set(run.manifest["skipped_variants"]) == {"fp32", "int8"}
    show_run(tmp_path / "run", SimpleNamespace(json=False))
    printed = capsys.readouterr().out
    assert "note: NO FP32 REFERENCE" in printed and "delegate and device skew only" in printed
    from harness.report.render import write_report

    page = write_report(tmp_path / "run", tmp_path / "report.html", n_resamples=50).html
    assert "<b>note:</b> NO FP32 REFERENCE" in page.read_text()


def test_probability_outputs_are_scored_by_their_log_not_a_softmax_of_them(dataset, dataset_file, tmp_path):
    model = _trained(dataset, keras_conv(), from_logits=False)
    path = tmp_path / "softmax.keras"
    model.save(path)
    source = ModelSource(None, {"source": "file", "path": str(path)}, load=lambda: model, file=path)
    assert source.facts.outputs == "probabilities"
    run = _run(_experiment(dataset_file, path, ["fp32"]), dataset, source, tmp_path / "run")
    assert run.manifest["model"]["outputs"] == "probabilities"
    assert any(n.startswith("outputs are probabilities (its last layer is a softmax") for n in run.manifest["notes"])
    frame = run.per_sample("fp32", "local", "xnnpack")
    from harness.rundir.layout import REFERENCE_JOB

    ref = run.logits(*REFERENCE_JOB)
    p = dict(zip(ref.ids, ref.values))
    expected = [-np.log(max(p[i][y] / p[i].sum(), 1e-7)) for i, y in zip(frame["id"], frame["label"])]
    np.testing.assert_allclose(frame["loss_ref"], expected, rtol=1e-4)
    # a softmax of probabilities would squash every loss into [log 10 - 1, log 10]; these are not
    assert frame["loss_ref"].min() < 0.5
    # analyze differentiates the same loss: -log p, per group, over every test sample
    from harness.analysis.analyze import AnalyzeOptions, analyze

    result = analyze(tmp_path / "run", AnalyzeOptions(variants=("fp32",), iterations=1, probes=1,
                                                      max_samples_per_group=10_000))
    ref_rows = result.analysis[result.analysis["variant"] == "reference"].set_index("group")
    for group, loss in frame.groupby("group")["loss_ref"].mean().items():
        assert ref_rows.loc[group, "loss"] == pytest.approx(loss, rel=1e-3)


def test_a_model_that_rescales_inputs_the_dataset_rescales_too_is_warned_about(dataset, dataset_file, tmp_path,
                                                                               caplog):
    import keras

    model = _trained(dataset, keras.layers.Rescaling(1 / 16, name="rescale"), keras_conv(), name="twice")
    path = tmp_path / "twice.keras"
    model.save(path)
    source = ModelSource(None, {"source": "file", "path": str(path)}, load=lambda: model, file=path)
    run = _run(_experiment(dataset_file, path, ["fp32", "int8"]), dataset, source, tmp_path / "run")
    warning = next(n for n in run.manifest["notes"] if n.startswith("WARNING: input rescaled twice"))
    acc = run.metrics[(run.metrics["variant"] == "fp32") & (run.metrics["scope"] == "overall")].iloc[0]["acc_ref"]
    assert "Rescaling 'rescale' (x * 0.0625 + 0)" in warning and "x * 0.0625 + 0" in warning
    assert f"FP32 accuracy with both is {acc:.1%}" in warning
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
            and r.getMessage().startswith("input rescaled twice")] == [warning.removeprefix("WARNING: ")]
    # item 11: the converter folds the Rescaling into the conv; analyze still maps int8's weights
    from harness.analysis.analyze import AnalyzeOptions, analyze

    result = analyze(tmp_path / "run", AnalyzeOptions(iterations=2, probes=1, max_samples_per_group=16))
    int8 = result.analysis[result.analysis["variant"] == "int8"]
    assert len(int8) and (int8["error"] == "").all(), list(int8["error"])
    assert int8["loss"].notna().all()


def keras_conv():
    import keras

    return keras.layers.Conv2D(4, 3, activation="relu")


def test_a_tflite_with_a_custom_op_fails_naming_the_op(dataset, tmp_path):
    from harness.errors import ArtifactError, ModelError
    from support.custom_op import CUSTOM_OP, custom_op_tflite

    path = custom_op_tflite(tmp_path / "custom.tflite")
    source = ModelSource.from_tflite(path)
    assert source.facts.form == "tflite-float" and source.facts.num_classes == 3
    from harness.quantize.convert import artifact_of
    from harness.quantize.host_run import reference_kernel_outputs

    job = artifact_of(path, "fp32", {"tool": "given"}, None, 8)  # what the job records as its error
    assert not job.ok and f"it has custom op(s) {CUSTOM_OP}, which ai_edge_litert has no kernel" in job.error
    with pytest.raises(ArtifactError, match=f"reference kernels: it has custom op\\(s\\) {CUSTOM_OP}"):
        reference_kernel_outputs(path, np.zeros((2, 4), np.float32))  # the run's reference, before any job
    with pytest.raises(ModelError, match="is a .tflite file: this step needs the Keras model"):
        source.model  # noqa: B018
