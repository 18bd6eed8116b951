"""Hugging Face datasets (harness/datasets/huggingface.py): save_to_disk folders read offline,
columns mapped, images decoded and resized, one error per problem."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from harness import datasets
from harness.datasets.huggingface import fit_to_model
from harness.datasets.tabular import TableOptions
from harness.errors import DatasetError

hf = pytest.importorskip("datasets", reason="the optional extra qskew[hf] (datasets) is not installed")

X = "\u00d7"


def faces(n: int, seed: int, size=(12, 10)):
    """n small RGB images (width, height = size), a ClassLabel label and two group columns."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = [Image.fromarray(np.full((size[1], size[0], 3), 60 + 120 * y, np.uint8)) for y in labels]
    features = hf.Features({"img": hf.Image(), "smiling": hf.ClassLabel(names=["no", "yes"]),
                            "gender": hf.ClassLabel(names=["female", "male"]), "race": hf.Value("string")})
    return hf.Dataset.from_dict({"img": images, "smiling": labels.tolist(),
                                 "gender": (np.arange(n) % 2).tolist(),
                                 "race": rng.choice(["a", "b", "c"], n).tolist()}, features=features)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "faces"
    hf.DatasetDict({"train": faces(30, 0), "test": faces(24, 1)}).save_to_disk(str(path))
    return path


OPTIONS = TableOptions(input="img", label="smiling", groups=("gender", "race"), intersections=True)


def test_a_saved_dataset_dict_becomes_a_grouped_dataset(folder):
    ds = datasets.load(f"hf:{folder}", OPTIONS)
    assert ds.name == f"hf:{folder}" and ds.x.shape == (54, 10, 12, 3) and ds.x.dtype == np.uint8
    assert ds.preprocess.scale == pytest.approx(1 / 255)
    assert ds.attributes == ("gender", "race") and ds.intersections
    assert (ds.split == "train").sum() == 30 and (ds.split == "test").sum() == 24
    assert set(ds.groups) <= {f"{g}{X}{r}" for g in ("female", "male") for r in "abc"}   # ClassLabels by name
    bright = ds.x[:, 0, 0, 0] > 120
    assert np.array_equal(bright, ds.y == 1)                     # label codes match the images
    assert ds.ids[0] == "train-00000" and ds.ids[30] == "test-00000"


def test_read_offline_and_the_environment_is_restored(folder, monkeypatch):
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    seen = {}
    real = hf.load_from_disk

    def spy(path, *args, **kwargs):
        seen.update({name: os.environ.get(name) for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")})
        seen["config"] = (hf.config.HF_DATASETS_OFFLINE, hf.config.HF_HUB_OFFLINE)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(hf, "load_from_disk", spy)
    datasets.load(f"hf:{folder}", OPTIONS)
    assert seen == {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "config": (True, True)}
    assert "HF_DATASETS_OFFLINE" not in os.environ and "HF_HUB_OFFLINE" not in os.environ


def test_a_name_not_in_the_cache_is_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(DatasetError, match="not in the local Hugging Face cache.*allow_download = true"):
        datasets.load("hf:qskew-test/no-such-dataset", OPTIONS)


def test_single_dataset_folder_gets_a_seeded_split_and_numeric_inputs(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "numbers"
    hf.Dataset.from_dict({"features": rng.normal(size=(40, 3)).astype(np.float32).tolist(),
                          "label": rng.integers(0, 2, 40).tolist(),
                          "group": ["x", "y"] * 20}).save_to_disk(str(path))
    ds = datasets.load(f"hf:{path}", TableOptions(input="features"))
    assert ds.x.shape == (40, 3) and ds.x.dtype == np.float32 and ds.attributes == ("group",)
    assert set(ds.split) == {"train", "test"} and "seeded" in ds.description


@pytest.mark.parametrize("options, message", [
    (TableOptions(input="img", label="smiling", groups=("age",)), "split 'train' has no column 'age'"),
    (TableOptions(input="img", label="smiling", groups=("gender",), split="validation"), "no split 'validation'"),
])
def test_problems_are_named(folder, options, message):
    with pytest.raises(DatasetError, match=message):
        datasets.load(f"hf:{folder}", options)


def test_without_the_library_one_error_names_the_extra(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetError, match=r"pip install 'qskew\[hf\]'"):
        datasets.load(f"hf:{folder}", OPTIONS)


def test_images_are_resized_and_converted_to_the_models_input(folder):
    ds = datasets.load(f"hf:{folder}", OPTIONS)
    small = fit_to_model(ds, (8, 6, 1))
    assert small.x.shape == (54, 8, 6, 1) and "resized from 10x12x3 to the model's 8x6x1" in small.description
    assert np.array_equal(small.x[:, 0, 0, 0] > 120, ds.y == 1)
    assert fit_to_model(ds, (10, 12, 3)) is ds and fit_to_model(ds, (None, None, 3)) is ds
    assert fit_to_model(datasets.load("digits-groups"), (4, 4, 1)).x.shape[1:] == (8, 8, 1)   # only hf: data
