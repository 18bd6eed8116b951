"""Fixtures for the analysis tests: a tiny CNN on a two-group digits subset, its variants, a real run.

Everything heavy is module- or session-scoped: the dataset is a .npz file (so a run directory can
name it and ``qskew analyze`` can reload it), the model is trained for two epochs (~1 s) and saved as
a .keras file, and ``tiny_run`` is a real run directory written by ``harness.evaluate.evaluate``
(fp32 and int8 on the local target, ~10 s on 2 cores).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

N_SAMPLES = 400             # digits rows used: enough for two groups in train and test, fast
MINORITY_SHARE = 0.15       # share of rows in the "rare" group
CALIBRATION_SIZE = 32


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory) -> Path:
    """A .npz dataset: 400 sklearn digits (uint8, /16), groups 'rare' (faint ink) and 'common'."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(7)
    x = data.images[:N_SAMPLES].astype(np.uint8)
    rare = rng.random(N_SAMPLES) < MINORITY_SHARE
    x[rare] = np.floor(x[rare] * 0.4 + 0.5).astype(np.uint8)
    split = np.where(rng.random(N_SAMPLES) < 0.6, "train", "test")
    path = tmp_path_factory.mktemp("data") / "tinydigits.npz"
    np.savez(path, x=x[..., None], y=data.target[:N_SAMPLES].astype(np.int64),
             group=np.where(rare, "rare", "common").astype(str), split=split.astype(str),
             preprocess_scale=np.float64(1 / 16))
    return path


@pytest.fixture(scope="session")
def dataset(dataset_file):
    from harness import datasets

    return datasets.load(dataset_file)


@pytest.fixture(scope="session")
def tiny_model(dataset):
    """Conv2D -> Flatten -> Dense(16) -> Dense(10), trained two epochs."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(10, name="logits"),
    ], name="tiny")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = dataset.subset("train")
    model.fit(train.preprocess.apply(train.x), train.y, epochs=2, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def model_file(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_model.save(path)
    return path


@pytest.fixture(scope="session")
def variants(tiny_model, dataset, tmp_path_factory):
    """fp32, float16, int8 and int16x8 artifacts of the tiny model, by name."""
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions

    calibration = make_calibration(dataset, size=CALIBRATION_SIZE, seed=0)
    built = convert_all(tiny_model, ["fp32", "float16", "int8", "int16x8"], calibration,
                        QuantizeOptions(calibration_size=CALIBRATION_SIZE, check_batch_size=8),
                        tmp_path_factory.mktemp("variants"), progress=False)
    return {a.variant: a for a in built}


@pytest.fixture(scope="session")
def test_inputs(dataset):
    test = dataset.subset("test")
    return test.preprocess.apply(test.x), np.asarray(test.y), np.asarray(test.group).astype(str)


@pytest.fixture(scope="session")
def tiny_run(dataset_file, dataset, model_file, tmp_path_factory) -> Path:
    """A real run directory (fp32 + int8, local target) whose manifest names model_file and dataset_file."""
    from harness import config, modelio
    from harness.evaluate import ModelSource, evaluate

    model = modelio.load_model(model_file)
    exp = config.from_dict({"experiment": {"name": "tiny"}, "data": {"dataset": str(dataset_file)},
                            "model": {"path": str(model_file)},
                            "quantize": {"variants": ["fp32", "int8"], "calibration_size": CALIBRATION_SIZE},
                            "run": {"batch_size": 32}}, source="analysis tests")
    source = ModelSource(model, {"source": "file", "path": str(model_file), "sha256": modelio.model_sha256(model)})
    out = tmp_path_factory.mktemp("runs") / "tiny-run"
    return evaluate(exp, dataset, source, out, progress=False)
