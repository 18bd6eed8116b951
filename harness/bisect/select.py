"""Which jobs and which samples ``qskew bisect`` runs again.

A job is named ``VARIANT/TARGET/DELEGATE`` as in the run's tables, split at the first two ``/``
only (a delegate such as ``external:/path/lib.so`` holds more). The samples (``--samples``):

* ``flipped`` (default): those whose predicted class differs between A and B; when none flipped,
  those whose logits differ; when none differ, the first ones of each group;
* ``group:NAME``: the same rule within group NAME;
* ``N`` (an integer): the first N samples of each group.

Every rule stratifies by group; the first two take at most ``per_group`` samples of each (a device run of a
few dozen samples stays short even on an emulated board); :class:`SampleChoice` says which rule chose.

>>> parse_job("int8/local/external:/opt/lib/libfoo.so")
('int8', 'local', 'external:/opt/lib/libfoo.so')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError

PER_GROUP = 25   # samples per group by default: 50 for a two-group run, about a minute on a board


@dataclass(frozen=True)
class SampleChoice:
    """The test samples chosen, in stored order, and the rule that chose them."""

    index: np.ndarray         # positions in the run's test set
    ids: np.ndarray
    groups: np.ndarray
    rule: str                 # "flipped", "logits differ" or "first N per group"
    available: dict[str, int]  # per group: how many samples the rule found before the cap


def parse_job(text: str) -> tuple[str, str, str]:
    """``VARIANT/TARGET/DELEGATE`` -> (variant, target, delegate); ConfigError names a bad one."""
    parts = str(text).split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"job {text!r} is not VARIANT/TARGET/DELEGATE (e.g. int8/local/builtin)")
    return parts[0], parts[1], parts[2]


def choose_samples(spec: str, groups: np.ndarray, ids: np.ndarray, pred_a: np.ndarray | None,
                   pred_b: np.ndarray | None, differ: np.ndarray | None, per_group: int = PER_GROUP) -> SampleChoice:
    """Apply the ``--samples`` rule (module docstring). ``pred_a``/``pred_b`` are the predicted
    classes of the two jobs and ``differ`` whether any logit differs, per sample (None when the run
    lacks a job's rows: only ``N`` can be used then)."""
    if per_group < 1:
        raise ConfigError(f"--per-group must be >= 1, not {per_group}")
    groups = np.asarray(groups).astype(str)
    spec = str(spec).strip()
    if spec.isdigit():
        if int(spec) < 1:
            raise ConfigError(f"--samples {spec}: take at least 1 sample per group")
        return _take(np.ones(len(groups), bool), groups, ids, int(spec), "first N per group")
    within = np.ones(len(groups), bool)
    if spec.startswith("group:"):
        name = spec[len("group:"):]
        if name not in set(groups.tolist()):
            raise ConfigError(f"--samples {spec}: no group {name!r} in the run; it has: "
                              f"{', '.join(sorted(set(groups.tolist())))}")
        within = groups == name
    elif spec != "flipped":
        raise ConfigError(f"--samples {spec!r}: use flipped, group:NAME or a number")
    if pred_a is None or pred_b is None or differ is None:
        raise ConfigError(f"--samples {spec}: the run holds no predictions of one of the two jobs; "
                          "pass a number of samples per group instead")
    flipped = within & (np.asarray(pred_a) != np.asarray(pred_b))
    if flipped.any():
        return _take(flipped, groups, ids, per_group, "flipped")
    if (within & differ).any():
        return _take(within & differ, groups, ids, per_group, "logits differ")
    return _take(within, groups, ids, per_group, "first N per group")


def _take(mask: np.ndarray, groups: np.ndarray, ids: np.ndarray, per_group: int, rule: str) -> SampleChoice:
    chosen, available = [], {}
    for name in sorted(set(groups[mask].tolist())):
        members = np.flatnonzero(mask & (groups == name))
        available[name] = int(members.size)
        chosen.append(members[:per_group])
    index = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    return SampleChoice(index=index, ids=np.asarray(ids)[index], groups=groups[index], rule=rule,
                        available=available)
