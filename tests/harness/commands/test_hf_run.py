"""A Hugging Face dataset built in the test (save_to_disk) run end to end with `qskew run`, no network:
images twice the model's size and in colour are resized and turned grey for the user's model."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from harness import cli, rundir

hf = pytest.importorskip("datasets", reason="the optional extra qskew[hf] (datasets) is not installed")

EXPERIMENT = """
[data]
dataset = "hf:digits"
input = "picture"
label = "digit"
groups = ["sex", "race"]
intersections = true

[model]
path = "model.keras"

[quantize]
variants = ["int8"]
calibration_size = 64

[run]
delegates = ["reference"]
"""


def _digits_dataset(path):
    """sklearn's digits as 16x16 RGB PNG images in a DatasetDict, with two invented group columns."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(0)
    sex, race = rng.choice(["F", "M"], len(images)), rng.choice(["p", "q"], len(images), p=[0.7, 0.3])
    split = np.arange(len(images)) % 3 == 0

    def part(rows):
        return hf.Dataset.from_dict(
            {"picture": [Image.fromarray(images[i]).convert("RGB").resize((16, 16)) for i in rows],
             "digit": digits.target[rows].tolist(), "sex": sex[rows].tolist(), "race": race[rows].tolist()},
            features=hf.Features({"picture": hf.Image(), "digit": hf.Value("int64"), "sex": hf.Value("string"),
                                  "race": hf.Value("string")}))
    hf.DatasetDict({"train": part(np.flatnonzero(~split)), "test": part(np.flatnonzero(split))}).save_to_disk(str(path))
    return images[~split], digits.target[~split]


def _model(path, x, y):
    """A small Keras model on 8x8x1 inputs (scaled to [0, 1]), trained for a few seconds."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(10)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[..., None] / 255.0, y, epochs=30, verbose=0)
    model.save(path)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test."""
    real = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")) and "/" not in host:
            raise AssertionError(f"network access during the run: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_saved_hugging_face_dataset_runs_end_to_end(tmp_path, no_network):
    x_train, y_train = _digits_dataset(tmp_path / "digits")
    _model(tmp_path / "model.keras", x_train, y_train)
    (tmp_path / "exp.toml").write_text(EXPERIMENT)
    out = tmp_path / "run"
    assert cli.main(["run", str(tmp_path / "exp.toml"), "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    dataset = run.manifest["dataset"]
    assert dataset["name"] == f"hf:{tmp_path / 'digits'}" and dataset["attributes"] == ["sex", "race"]
    assert "resized from 16x16x3 to the model's 8x8x1" in dataset["description"]
    m = run.metrics[run.metrics.variant == "int8"]
    overall = m[m.scope == "overall"].iloc[0]
    assert overall.n == 599 and overall.acc_ref > 0.8        # resizing kept the digits readable
    for attribute in ("sex", "race", "sex\u00d7race"):
        assert m[m.attribute == attribute].n.sum() == overall.n
