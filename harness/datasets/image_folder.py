"""An image-folder dataset: a CSV ``path,label,group[,id,split]`` and the PNG/JPEG images it names.

Every ``path`` is relative to the CSV's folder and must stay inside it once ``..`` and symlinks are
resolved: a dataset cannot make qskew read (and later push to a device) a file from elsewhere.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harness.datasets.assemble import assemble
from harness.errors import DatasetError
from harness.records import GroupedDataset, Preprocess

CSV_NAME = "labels.csv"           # the CSV looked up when the spec is a folder
CSV_REQUIRED = ("path", "label", "group")


def load_image_folder(csv_path: Path) -> GroupedDataset:
    """A dataset from a CSV ``path,label,group[,id,split]`` and the images it names."""
    rows = _read_csv(csv_path)
    column = lambda name: np.array([(r.get(name) or "").strip() for r in rows])  # noqa: E731
    ids = column("id") if "id" in rows[0] else column("path")
    split = column("split") if "split" in rows[0] else None
    x = _read_images(csv_path, column("path").tolist())
    return assemble(csv_path, csv_path.parent.name or csv_path.stem, x, column("label"), column("group"),
                    ids, split, Preprocess(scale=1.0 / 255.0, offset=0.0))


def _read_csv(csv_path: Path) -> list[dict]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read the CSV ({exc})") from exc
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(repr(c) for c in missing)}; expected "
                           f"{','.join(CSV_REQUIRED)}[,id,split], found: {','.join(header) or 'no header'}")
    if not rows:
        raise DatasetError(f"{csv_path}: has a header but no rows")
    return rows


def _read_images(csv_path: Path, rel_paths: list[str]) -> np.ndarray:
    decode = _image_decoder()
    images, first = [], None
    folder = csv_path.parent.resolve()
    for rel in rel_paths:
        file = _inside(folder, rel, csv_path)
        try:
            img = decode(file)
        except Exception as exc:  # missing file, not an image, unsupported format
            raise DatasetError(f"{file}: cannot read image listed in {csv_path} ({exc})") from exc
        if first is None:
            first = (file, img.shape)
        elif img.shape != first[1]:
            raise DatasetError(f"{file}: image shape {img.shape} differs from {first[1]} of {first[0]}; "
                               "all images of a dataset must have the same size and channels")
        images.append(img)
    return np.stack(images)


def _inside(folder: Path, rel: str, csv_path: Path) -> Path:
    """``folder / rel`` if it resolves inside ``folder``, else DatasetError naming the CSV."""
    file = folder / rel
    resolved = file.resolve()
    if "\0" in rel or Path(rel).is_absolute() or not resolved.is_relative_to(folder) or resolved == folder:
        shown = rel.encode("unicode_escape").decode("ascii")
        raise DatasetError(f"{csv_path}: path '{shown}' points outside the dataset's folder {folder}; "
                           "image paths must be relative and stay inside it")
    return file


def _image_decoder():
    """PIL when installed (fast to import), else TensorFlow (a dependency anyway); uint8 [H, W, C]."""
    try:
        from PIL import Image
    except ImportError:
        import tensorflow as tf

        def decode_tf(file: Path) -> np.ndarray:
            data = tf.io.read_file(str(file))
            return tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False).numpy()
        return decode_tf

    def decode_pil(file: Path) -> np.ndarray:
        with Image.open(file) as im:
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("L" if im.mode in ("1", "I", "I;16", "F") else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
        return arr[..., np.newaxis] if arr.ndim == 2 else arr
    return decode_pil
