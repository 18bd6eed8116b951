"""harness/datasets/image_folder.py: a CSV and the images it names."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness import datasets  # noqa: E402


def _png(path: Path, array: np.ndarray) -> None:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(array))


def _image_folder(tmp_path: Path, rows: list[str], header: str = "path,label,group,split",
                  sizes: dict[str, tuple] | None = None) -> Path:
    folder = tmp_path / "faces"
    for i, row in enumerate(rows):
        rel = row.split(",")[0]
        shape = (sizes or {}).get(rel, (4, 5, 3))
        _png(folder / rel, np.full(shape, 10 * i, np.uint8))
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


ROWS = ["img/a.png,0,young,train", "img/b.png,1,old,train", "img/c.png,1,young,test", "img/d.png,0,old,test"]


def test_image_folder_loads_by_folder_and_by_csv(tmp_path):
    folder = _image_folder(tmp_path, ROWS)
    ds = datasets.load(folder)
    assert ds.name == "faces" and ds.x.shape == (4, 4, 5, 3) and ds.x.dtype == np.uint8
    assert ds.ids.tolist() == ["img/a.png", "img/b.png", "img/c.png", "img/d.png"]
    assert ds.x[2].max() == 20 and ds.y.tolist() == [0, 1, 1, 0]
    assert ds.preprocess.scale == pytest.approx(1 / 255)
    assert datasets.load(folder / "labels.csv").sha256() == ds.sha256()


def test_image_folder_sizes_differ(tmp_path, load_error):
    folder = _image_folder(tmp_path, ROWS, sizes={"img/c.png": (4, 6, 3)})
    msg = load_error(folder)
    assert "c.png" in msg and "differs" in msg


def test_image_folder_missing_group_column(tmp_path, load_error):
    rows = [",".join(r.split(",")[:2]) for r in ROWS]
    msg = load_error(_image_folder(tmp_path, rows, header="path,label"))
    assert "labels.csv" in msg and "'group'" in msg


def test_image_folder_empty_group_and_bad_label(tmp_path, load_error):
    folder = _image_folder(tmp_path, ["img/a.png,0,,train", *ROWS[1:]])
    assert "1 of 4 samples have no group" in load_error(folder) and "'img/a.png'" in load_error(folder)
    folder = _image_folder(tmp_path, ["img/a.png,zero,young,train", *ROWS[1:]])
    assert "labels must be integers; got 'zero'" in load_error(folder)


def test_image_folder_missing_image_and_missing_csv(tmp_path, load_error):
    folder = _image_folder(tmp_path, ROWS)
    (folder / "img" / "b.png").unlink()
    assert "b.png" in load_error(folder)
    (folder / "labels.csv").unlink()
    assert "labels.csv" in load_error(folder)


@pytest.mark.parametrize("bad", ["../outside.png", "img/../../outside.png", "{abs}", "img/link.png"])
def test_paths_outside_the_dataset_folder_are_refused(tmp_path, bad):
    from harness.errors import DatasetError

    folder = _image_folder(tmp_path, ROWS)
    outside = tmp_path / "outside.png"
    _png(outside, np.zeros((4, 5, 3), np.uint8))
    (folder / "img" / "link.png").symlink_to(outside)  # a symlink out counts as outside
    bad = bad.format(abs=outside)
    (folder / "labels.csv").write_text("path,label,group\nimg/a.png,0,young\n" + f"{bad},1,old\n")
    with pytest.raises(DatasetError, match="points outside the dataset's folder") as err:
        datasets.load(folder)
    assert str(folder / "labels.csv") in str(err.value)
