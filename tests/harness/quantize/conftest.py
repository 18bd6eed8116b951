"""Fixtures for the quantize tests: a tiny Keras CNN trained on sklearn digits, its variants.

Everything heavy is session-scoped: the model is trained once (1 epoch, ~1 s) and all six variants
are converted once into a session cache folder (~5 s on 2 cores).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.records import GroupedDataset, Preprocess  # noqa: E402

GROUP_SHARES = {"a": 0.2, "b": 0.3, "c": 0.5}  # unequal on purpose: strategies must differ
TRAIN_SHARE = 0.8
CALIBRATION_SIZE = 64


@pytest.fixture(scope="session")
def digits() -> GroupedDataset:
    """sklearn digits (8x8, uint8 0..16) with three unequal groups and a train/test split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    n = len(data.target)
    rng = np.random.default_rng(42)
    group = rng.choice(list(GROUP_SHARES), size=n, p=list(GROUP_SHARES.values()))
    split = np.where(rng.random(n) < TRAIN_SHARE, "train", "test")
    return GroupedDataset(
        name="digits", ids=np.array([f"d{i:04d}" for i in range(n)]),
        x=data.images.astype(np.uint8)[..., None], y=data.target.astype(np.int64),
        group=group.astype("<U1"), split=split.astype("<U5"), num_classes=10,
        preprocess=Preprocess(scale=1 / 16))


@pytest.fixture(scope="session")
def tiny_cnn(digits):
    """Two Conv2D, Flatten, two Dense; 10 logits; trained one epoch on the training rows."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv_a"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_b"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(10, name="logits"),
    ], name="tiny_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = digits.subset("train")
    model.fit(train.preprocess.apply(train.x), train.y, epochs=1, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def calibration(digits):
    from harness.quantize.calibration import make_calibration

    return make_calibration(digits, size=CALIBRATION_SIZE, strategy="random", seed=0)


@pytest.fixture(scope="session")
def variant_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("variants")


@pytest.fixture(scope="session")
def artifacts(tiny_cnn, calibration, variant_cache):
    """All six variants of tiny_cnn, by name (default options: mixed = last 2 weight ops)."""
    from harness.quantize.convert import convert_all
    from harness.quantize.options import QuantizeOptions

    built = convert_all(tiny_cnn, "all", calibration, QuantizeOptions(check_batch_size=16),
                        variant_cache, progress=False)
    return {a.variant: a for a in built}
