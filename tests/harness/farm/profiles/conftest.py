"""Fixtures for the Edge TPU tests: a tiny CNN's real variants, a device with the edgetpu profile,
and the FAKE edgetpu_compiler put on the PATH.

The model is a Keras CNN on synthetic 8x8x1 uint8 images in two groups (trained one epoch, ~1 s);
its variants are converted once per session with the real TFLite converter and ai-edge-quantizer:
every variant with a dynamic batch, and int8/int16x8/mixed with ``fixed_batch = 1``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import stat  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.records import GroupedDataset, Preprocess  # noqa: E402

FAKE_COMPILER = Path(__file__).with_name("fake_edgetpu_compiler.py")
N_SAMPLES = 160
CALIBRATION_SIZE = 32


@pytest.fixture(scope="session")
def tiny_data() -> GroupedDataset:
    """Synthetic 8x8x1 uint8 images whose class is the brightest quadrant (4 classes), 2 groups."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, N_SAMPLES)
    x = rng.integers(0, 96, size=(N_SAMPLES, 8, 8, 1))
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * 4:r * 4 + 4, c * 4:c * 4 + 4, 0] += 150
    split = np.where(np.arange(N_SAMPLES) % 4 == 0, "test", "train")
    return GroupedDataset(name="quadrants", ids=np.array([f"q{i:03d}" for i in range(N_SAMPLES)]),
                          x=x.astype(np.uint8), y=y.astype(np.int64),
                          group=np.where(np.arange(N_SAMPLES) % 3 == 0, "a", "b").astype("<U1"),
                          split=split.astype("<U5"), num_classes=4, preprocess=Preprocess(scale=1 / 255))


@pytest.fixture(scope="session")
def tiny_keras(tiny_data):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(4, name="logits"),
    ], name="quadrant_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = tiny_data.subset("train")
    model.fit(train.preprocess.apply(train.x), train.y, epochs=1, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("edgetpu-variants")


@pytest.fixture(scope="session")
def dynamic_variants(tiny_keras, tiny_data, variant_dir):
    """Every variant with a dynamic batch, by name."""
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions

    calib = make_calibration(tiny_data, size=CALIBRATION_SIZE, seed=0)
    built = convert_all(tiny_keras, "all", calib, QuantizeOptions(check_batch_size=8), variant_dir,
                        progress=False)
    return {a.variant: a for a in built}


@pytest.fixture(scope="session")
def fixed_variants(tiny_keras, tiny_data, variant_dir):
    """int8, int16x8 and mixed converted with fixed_batch = 1, by name."""
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions

    calib = make_calibration(tiny_data, size=CALIBRATION_SIZE, seed=0)
    built = convert_all(tiny_keras, "int8,int16x8,mixed", calib, QuantizeOptions(fixed_batch=1),
                        variant_dir, progress=False)
    return {a.variant: a for a in built}


@pytest.fixture
def copy_of(tmp_path):
    """Copy an artifact's .tflite into a fresh folder (so files placed beside it stay per test)."""
    import dataclasses
    import shutil

    def copy(artifact, name=None):
        folder = tmp_path / f"variant-{artifact.variant}"
        folder.mkdir(exist_ok=True)
        path = folder / (name or Path(artifact.path).name)
        shutil.copyfile(artifact.path, path)
        return dataclasses.replace(artifact, path=path)

    return copy


@pytest.fixture
def edgetpu_cache(tmp_path, monkeypatch):
    """A private qskew cache for this test (compiled models are cached there)."""
    cache = tmp_path / "qskew-cache"
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A PATH on which no edgetpu_compiler can be found (the real one is never installed here)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("QSKEW_EDGETPU_MODELS", raising=False)


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
    """The FAKE edgetpu_compiler as ``edgetpu_compiler`` first on the PATH; returns its call log."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    launcher = bin_dir / "edgetpu_compiler"
    launcher.write_text(f"#!{sys.executable}\n" + FAKE_COMPILER.read_text())
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    calls = tmp_path / "fake-compiler-calls.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_EDGETPU_CALLS", str(calls))
    monkeypatch.delenv("FAKE_EDGETPU_FAIL", raising=False)
    monkeypatch.delenv("FAKE_EDGETPU_UNMAPPED", raising=False)
    monkeypatch.delenv("QSKEW_EDGETPU_MODELS", raising=False)
    return calls


@pytest.fixture
def edgetpu_device():
    """A local device with the edgetpu profile (a host with an Edge TPU would look like this)."""
    from harness.farm.inventory import DeviceSpec

    return DeviceSpec(name="coral-bench", reach="local", python=sys.executable, workdir="",
                      profile="edgetpu")
