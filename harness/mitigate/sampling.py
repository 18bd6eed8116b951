"""Group-aware fine-tuning data: a group-balanced sampler and group weights for the loss.

Both work on the group label of each training row (numpy only, no TensorFlow), so the QAT child
process and the tests use the same code:

- :func:`balanced_indices` draws one epoch of row indices in which every group has the same share
  (``size // G`` rows each, the remainder to the first groups in name order). A group with fewer
  rows than its share is drawn with replacement (oversampled); a larger one without replacement
  (subsampled). The indices come back shuffled.
- :func:`group_weights` gives each group the inverse-frequency weight ``w_g = N / (G * n_g)``
  (N rows, G groups, n_g rows in group g): the weights average to 1 over the rows, so the mean loss
  keeps its scale, and every group contributes the same total weight ``N / G``.
  :func:`sample_weights` spreads them over the rows (Keras ``fit(..., sample_weight=w)``).

Used together, the two multiply: balanced sampling already gives each group the share ``1/G``, and
the weights then favour the small groups again. The QAT options keep them separate for that reason.

    >>> groups = np.array(["a"] * 8 + ["b"] * 2)
    >>> group_weights(groups)
    {'a': 0.625, 'b': 2.5}
    >>> idx = balanced_indices(groups, 10, np.random.default_rng(0))
    >>> sorted(np.unique(groups[idx], return_counts=True)[1].tolist())
    [5, 5]
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError, DatasetError


def balanced_indices(groups: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` row indices (int64, shuffled) with every group drawn equally often (± 1 row)."""
    groups = np.asarray(groups).astype(str)
    names = np.unique(groups)
    if names.size == 0:
        raise DatasetError("balanced sampling needs at least one training row")
    if size < names.size:
        raise ConfigError(f"a balanced epoch of {size} rows cannot cover the {names.size} groups")
    counts = np.full(names.size, size // names.size, dtype=np.int64)
    counts[: size - int(counts.sum())] += 1
    parts = []
    for name, count in zip(names, counts):
        members = np.flatnonzero(groups == name)
        parts.append(rng.choice(members, size=int(count), replace=members.size < count))
    index = np.concatenate(parts).astype(np.int64)
    rng.shuffle(index)
    return index


def group_weights(groups: np.ndarray) -> dict[str, float]:
    """Inverse-frequency weight per group, ``N / (G * n_g)``; they average to 1 over the rows."""
    names, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    if names.size == 0:
        raise DatasetError("group weights need at least one training row")
    total = float(counts.sum())
    return {str(name): total / (names.size * float(count)) for name, count in zip(names, counts)}


def sample_weights(groups: np.ndarray, weights: dict[str, float] | None = None) -> np.ndarray:
    """float32 weight per row: its group's weight (``weights`` or :func:`group_weights`)."""
    groups = np.asarray(groups).astype(str)
    weights = group_weights(groups) if weights is None else weights
    missing = sorted(set(groups.tolist()) - set(weights))
    if missing:
        raise ConfigError(f"no weight for group(s) {', '.join(missing)}")
    return np.array([weights[g] for g in groups], dtype=np.float32)


def group_shares(groups: np.ndarray) -> dict[str, float]:
    """Share of each group among ``groups`` (for the record of what an epoch looked like)."""
    names, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    total = max(int(counts.sum()), 1)
    return {str(n): int(c) / total for n, c in zip(names, counts)}
