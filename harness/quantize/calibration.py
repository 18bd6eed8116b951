"""The representative dataset for static quantization, drawn from the training split only.

Three strategies, all reproducible from ``seed``:

- ``random``: a uniform sample of training rows (without replacement);
- ``proportional``: stratified by group, each group's count = its training share x size
  (largest-remainder rounding, so every count is within one sample of the exact share);
- ``balanced``: the same count for every group (``size // number_of_groups``); a group smaller
  than that is drawn with replacement (and a warning is logged).

    >>> calib = make_calibration(dataset, size=128, strategy="balanced", seed=0)
    >>> calib.x_float.shape, calib.info.group_shares
    ((128, 8, 8, 1), {'a': 0.5, 'b': 0.5})

The ``sha256`` in :class:`CalibrationInfo` hashes the preprocessed float samples, so it changes
with the seed, the strategy, the size or the data; the quantize cache keys on it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError, DatasetError
from harness.quantize.options import CALIBRATION_STRATEGIES
from harness.records import CalibrationInfo, GroupedDataset

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"  # calibration never sees test rows: they are what is evaluated


@dataclass(frozen=True, eq=False)
class Calibration:
    """Preprocessed float samples [N, ...] for the converter, their ids, and what they are."""

    x_float: np.ndarray
    ids: np.ndarray
    info: CalibrationInfo


def make_calibration(train: GroupedDataset, size: int = 256, strategy: str = "random",
                     seed: int = 0) -> Calibration:
    """Draw ``size`` training rows with ``strategy`` and preprocess them to float32.

    ``train`` may be the whole dataset: only its ``split == "train"`` rows are used. If it has
    fewer training rows than ``size``, all of them are used (random/proportional).
    Raises DatasetError when there is no training row, ConfigError for a bad size or strategy.
    """
    if strategy not in CALIBRATION_STRATEGIES:
        raise ConfigError(f"unknown calibration strategy {strategy!r}; "
                          f"known: {', '.join(CALIBRATION_STRATEGIES)}")
    if size < 1:
        raise ConfigError(f"calibration size must be >= 1, got {size}")
    rows = np.flatnonzero(train.split == TRAIN_SPLIT)
    if rows.size == 0:
        raise DatasetError(f"dataset {train.name!r} has no {TRAIN_SPLIT!r} rows to calibrate "
                           f"with (calibration comes from the training split only)")
    rng = np.random.default_rng(seed)
    groups = train.group[rows].astype(str)
    if strategy == "random":
        chosen = _sample(rows, min(size, rows.size), rng)
    elif strategy == "proportional":
        chosen = _proportional(rows, groups, size, rng)
    else:
        chosen = _balanced(rows, groups, size, rng, train.name)
    x_float = np.ascontiguousarray(train.preprocess.apply(train.x[chosen]))
    info = CalibrationInfo(size=int(chosen.size), strategy=strategy, seed=int(seed),
                           group_shares=_shares(train.group[chosen].astype(str), groups),
                           sha256=_sha256(x_float))
    return Calibration(x_float=x_float, ids=train.ids[chosen], info=info)


def _sample(rows: np.ndarray, count: int, rng: np.random.Generator,
            replace: bool = False) -> np.ndarray:
    """``count`` of ``rows`` (sorted, so the order does not depend on the draw)."""
    return np.sort(rng.choice(rows, size=count, replace=replace))


def _proportional(rows: np.ndarray, groups: np.ndarray, size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Stratified sample: counts follow the training shares (largest-remainder rounding)."""
    size = min(size, rows.size)
    names, counts = np.unique(groups, return_counts=True)
    exact = counts / counts.sum() * size
    quota = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - quota), kind="stable")
    quota[remainder_order[: size - int(quota.sum())]] += 1
    parts = [_sample(rows[groups == name], int(q), rng) for name, q in zip(names, quota)]
    return np.sort(np.concatenate(parts))


def _balanced(rows: np.ndarray, groups: np.ndarray, size: int, rng: np.random.Generator,
              dataset: str) -> np.ndarray:
    """The same count per group; small groups are drawn with replacement."""
    names = np.unique(groups)
    per_group = size // names.size
    if per_group < 1:
        raise ConfigError(f"balanced calibration of {size} samples cannot cover the "
                          f"{names.size} groups of dataset {dataset!r}")
    parts = []
    for name in names:
        members = rows[groups == name]
        replace = members.size < per_group
        if replace:
            log.warning("dataset %r: group %r has %d training rows < %d per group; "
                        "drawing with replacement", dataset, name, members.size, per_group)
        parts.append(_sample(members, per_group, rng, replace=replace))
    return np.sort(np.concatenate(parts))


def _shares(chosen_groups: np.ndarray, all_groups: np.ndarray) -> dict[str, float]:
    """Share of each training group among the chosen samples (0.0 for a group left out)."""
    total = max(int(chosen_groups.size), 1)
    return {str(g): float(np.count_nonzero(chosen_groups == g)) / total
            for g in sorted(set(all_groups.tolist()))}


def _sha256(x: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{x.dtype}{x.shape}".encode())
    h.update(x.tobytes())
    return h.hexdigest()
