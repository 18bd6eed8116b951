"""harness/datasets/npz.py (and the checks of assemble.py it drives): .npz datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import datasets


def _npz(tmp_path: Path, name: str = "data.npz", **arrays) -> Path:
    n = 10
    base = {"x": np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1),
            "y": np.arange(n) % 3,
            "group": np.array(["a", "b"] * (n // 2)),
            "split": np.array(["train", "test"] * 2 + ["test", "train"] * 3)}
    base.update(arrays)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_loads(tmp_path):
    path = _npz(tmp_path, id=np.array([f"s{i}" for i in range(10)]))
    ds = datasets.load(path)
    assert ds.name == "data" and len(ds) == 10 and ds.num_classes == 3
    assert ds.ids[0] == "s0" and ds.groups == ["a", "b"] and ds.y.dtype == np.int64
    assert ds.preprocess.scale == pytest.approx(1 / 255)
    assert set(ds.split.tolist()) == {"train", "test"}


def test_npz_defaults_seeded_split_and_float_preprocess(tmp_path):
    path = _npz(tmp_path, x=np.random.default_rng(0).random((10, 3)).astype(np.float32), split=None)
    ds = datasets.load(path)
    assert ds.preprocess.scale == 1.0
    assert "seeded" in ds.description
    assert np.sum(ds.split == "test") == 4  # 40 % of each group of 5, rounded
    for g in ("a", "b"):
        assert np.sum((ds.group == g) & (ds.split == "test")) == 2
    np.testing.assert_array_equal(datasets.load(path).split, ds.split)


def test_npz_explicit_preprocess(tmp_path):
    ds = datasets.load(_npz(tmp_path, preprocess_scale=np.float32(0.5), preprocess_offset=np.float32(-1)))
    assert ds.preprocess.scale == 0.5 and ds.preprocess.offset == -1.0


def test_npz_missing_group_key(tmp_path, load_error):
    path = _npz(tmp_path, group=None)
    msg = load_error(path)
    assert str(path) in msg and "'group'" in msg


def test_npz_object_array_needs_pickle(tmp_path, load_error):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.zeros((2, 2), np.uint8), y=np.array([0, 1]), group=np.array(["a", None], dtype=object))
    msg = load_error(path)
    assert "pickle" in msg and "unicode" in msg and "'group'" in msg


@pytest.mark.parametrize("group", [np.array(["a", "", "b", "a", "b", "nan", "a", "b", "a", "b"]),
                                   np.array([1.0, np.nan, 2.0, 1, 2, np.nan, 1, 2, 1, 2])])
def test_npz_missing_group_values(tmp_path, group, load_error):
    msg = load_error(_npz(tmp_path, group=group, id=np.array([f"s{i}" for i in range(10)])))
    assert "2 of 10 samples have no group" in msg and "'s1', 's5'" in msg


@pytest.mark.parametrize("y, shown", [(np.array([0, 1, 2.5] + [0] * 7), "2.5"),
                                      (np.array(["0", "1", "cat"] + ["0"] * 7), "'cat'")])
def test_npz_labels_not_integers(tmp_path, y, shown, load_error):
    msg = load_error(_npz(tmp_path, y=y))
    assert "labels must be integers" in msg and shown in msg


def test_npz_negative_label(tmp_path, load_error):
    assert "labels must be >= 0" in load_error(_npz(tmp_path, y=np.array([0, -1] + [0] * 8)))


def test_npz_mismatched_lengths(tmp_path, load_error):
    msg = load_error(_npz(tmp_path, y=np.arange(9)))
    assert "mismatched lengths" in msg and "x has 10 samples" in msg and "y has shape (9,)" in msg


def test_npz_duplicate_ids(tmp_path, load_error):
    msg = load_error(_npz(tmp_path, id=np.array(["s0", "s1", "s0"] + [f"t{i}" for i in range(6)] + ["s1"])))
    assert "2 duplicate ids" in msg and "'s0'" in msg and "'s1'" in msg


def test_npz_group_without_test_samples(tmp_path, load_error):
    group = np.array(["a", "b", "a", "b", "a", "c", "a", "c", "a", "b"])
    split = np.array(["test", "test", "test", "test", "test", "train", "test", "train", "test", "test"])
    assert "group 'c' has no test samples" in load_error(_npz(tmp_path, group=group, split=split))


def test_npz_no_test_split(tmp_path, load_error):
    assert "no test split" in load_error(_npz(tmp_path, split=np.array(["train"] * 10)))


def test_npz_unknown_split(tmp_path, load_error):
    msg = load_error(_npz(tmp_path, split=np.array(["train", "valid"] + ["test"] * 8)))
    assert "unknown split 'valid'" in msg


def test_npz_corrupt_file(tmp_path, load_error):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    assert str(path) in load_error(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_nan_or_inf_inputs_are_refused_with_the_sample_ids(tmp_path, load_error, bad):
    x = np.zeros((10, 2, 2, 1), np.float32)
    x[3, 1, 0, 0] = bad
    x[7, 0, 1, 0] = bad
    ids = np.array([f"s{i}" for i in range(10)])
    msg = load_error(_npz(tmp_path, x=x, id=ids))
    assert "2 of 10 samples have NaN or infinite inputs, first ids: 's3', 's7'" in msg
    assert "data.npz" in msg


def test_members_stored_uncompressed_are_memory_mapped(tmp_path):
    from harness.datasets.npz import read_npz

    x = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    np.savez(tmp_path / "plain.npz", x=x, f=np.asfortranarray(np.eye(3)), s=np.float32(2.0))
    np.savez_compressed(tmp_path / "packed.npz", x=x)
    plain, packed = read_npz(tmp_path / "plain.npz"), read_npz(tmp_path / "packed.npz")
    assert isinstance(plain["x"], np.memmap) and plain["x"].mode == "r"
    np.testing.assert_array_equal(plain["x"], x)
    np.testing.assert_array_equal(plain["f"], np.eye(3))  # Fortran order kept
    assert not isinstance(plain["s"], np.memmap) and plain["s"] == 2.0  # a scalar: read
    assert not isinstance(packed["x"], np.memmap)  # compressed: read whole
    np.testing.assert_array_equal(packed["x"], x)


def test_a_dataset_from_savez_keeps_its_samples_mapped_and_its_test_block_a_view(tmp_path):
    path = _npz(tmp_path, split=np.array(["train"] * 4 + ["test"] * 6))
    ds = datasets.load(path)
    test = ds.subset("test")
    assert isinstance(ds.x, np.memmap) and isinstance(test.x, np.memmap) and np.shares_memory(ds.x, test.x)
    np.testing.assert_array_equal(test.x, np.arange(40, dtype=np.uint8).reshape(10, 2, 2, 1)[4:])
    assert not ds.x.flags.writeable


def _rewritten(path: Path, rows: int) -> None:
    """``path`` written again in place, as np.savez does (same inode, truncated first), a second later."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    np.savez(path, x=np.full((rows, 2, 2, 1), 7, np.uint8), y=np.arange(rows) % 3,
             group=np.array(["a", "b"] * (rows // 2)), split=np.array(["train", "test"] * (rows // 2)))
    os.utime(path, ns=(before + 10**9, before + 10**9))  # the file clock's tick may not have moved yet


def test_a_dataset_file_written_again_during_a_run_is_an_error_naming_it(tmp_path):
    from harness.errors import DatasetError

    path = _npz(tmp_path)
    ds = datasets.load(path)
    _rewritten(path, 10)  # same size: a mapping would silently read the new samples
    with pytest.raises(DatasetError, match="written again") as info:
        ds.sha256()
    assert str(path) in str(info.value) and "rename" in str(info.value)


def test_a_dataset_file_cut_shorter_during_a_run_is_an_error_not_a_bus_error(tmp_path):
    # reading a mapped page past the end of a truncated file kills the process with SIGBUS: a child does it
    path = _npz(tmp_path, x=np.zeros((10, 64, 64, 3), np.uint8))
    script = ("import sys\nfrom pathlib import Path\nfrom harness import datasets\n"
              "from harness.errors import DatasetError\nfrom test_npz import _rewritten\n"
              "path = Path(sys.argv[1])\nds = datasets.load(path)\n_rewritten(path, 2)\n"
              "try:\n    ds.sha256()\nexcept DatasetError as exc:\n    print(exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent)] + sys.path)}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "written again" in done.stdout and str(path) in done.stdout


def test_a_dataset_file_replaced_by_a_rename_is_read_as_it_was(tmp_path):
    path = _npz(tmp_path)
    ds = datasets.load(path)
    before = ds.sha256()
    _rewritten(tmp_path / "new.npz", 10)
    os.replace(tmp_path / "new.npz", path)  # the mapping keeps the old file: the run stays consistent
    assert ds.sha256() == before
