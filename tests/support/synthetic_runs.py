"""Run directories built with the real RunWriter from synthetic numpy logits (no TensorFlow).

The reference logits are Gaussian noise plus a boost on the true class (about 90 % accuracy). A
variant's logits are the reference's shrunk towards zero and jittered, per group: a larger
``shrink``/``noise`` for a group flattens its logits and costs it accuracy, the mechanism the
report plots. Imported by the tests as ``support.synthetic_runs``.

With ``attributes`` (e.g. ("sex", "race")) the group labels of ``sizes`` and ``variants`` are the
cells ("F\u00d7A", values joined by ``harness.records.CROSS``) and the run reports each attribute
(and, with ``intersections``, the cells) like a tabular dataset with several group columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

import harness
from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits, Timings
from harness.rundir import RunWriter

SIZES = {"majority": 600, "minority": 150}
# variant -> group -> (shrink factor of the logits, noise sd); fp32 is the reference itself
VARIANTS = {
    "fp32": {},
    "int8": {"majority": (0.9, 0.4), "minority": (0.45, 1.5)},
}


def make_test_set(sizes: Mapping[str, int] = SIZES, num_classes: int = 4, data_seed: int = 0,
                  id_prefix: str = "s", attributes: Sequence[str] | None = None,
                  intersections: bool = False) -> tuple[GroupedDataset, np.ndarray]:
    """A test split and its reference logits [N, K] (float32)."""
    rng = np.random.default_rng(data_seed)
    groups = np.array([g for g, n in sorted(sizes.items()) for _ in range(n)], dtype=str)
    n = groups.size
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    z = rng.normal(0.0, 1.0, (n, num_classes))
    z[np.arange(n), labels] += 2.6
    ids = np.array([f"{id_prefix}{i:05d}" for i in range(n)])
    named = {"attributes": tuple(attributes), "intersections": intersections} if attributes else {}
    test = GroupedDataset(name="synthetic", ids=ids, x=np.zeros((n, 0), np.uint8), y=labels, group=groups,
                          split=np.full(n, "test"), num_classes=num_classes, **named)
    return test, z.astype(np.float32)


def variant_logits(z_ref: np.ndarray, groups: np.ndarray, spec: Mapping[str, tuple[float, float]],
                   noise_seed: int) -> np.ndarray:
    rng = np.random.default_rng(noise_seed)
    z = z_ref.astype(np.float64).copy()
    for group, (shrink, sd) in spec.items():
        rows = groups == group
        z[rows] = z[rows] * shrink + rng.normal(0.0, sd, z[rows].shape)
    return z.astype(np.float32)


def make_run_dir(path: Path, sizes: Mapping[str, int] = SIZES, variants=VARIANTS,
                 targets: Sequence[str] = ("local",), delegates: Sequence[str] = ("xnnpack",),
                 failed: Sequence[tuple[str, str, str]] = (), data_seed: int = 0, noise_seed: int = 1,
                 id_prefix: str = "s", calibration_shares: Mapping[str, float] | None = None,
                 delegate_applied: str | None = None, attributes: Sequence[str] | None = None,
                 intersections: bool = False) -> Path:
    """Write a complete run directory at ``path`` and return it."""
    test, z_ref = make_test_set(sizes, data_seed=data_seed, id_prefix=id_prefix, attributes=attributes,
                                intersections=intersections)
    ref = Logits(ids=test.ids.copy(), values=z_ref)
    writer = RunWriter(Path(path))
    writer.write_manifest(_manifest(test, variants, targets, calibration_shares))
    writer.add_reference(ref, test)
    for t_index, target in enumerate(targets):
        for variant, spec in variants.items():
            for d_index, delegate in enumerate(delegates):
                if (variant, target, delegate) in failed:
                    writer.add_failure(variant, target, delegate, "delegate failed to prepare", stage="run")
                    continue
                logits = variant_logits(z_ref, test.group, spec, noise_seed + 17 * t_index + 31 * d_index)
                run = DeviceRun(
                    variant=variant, target=target, delegate=delegate, artifact_sha256=f"{variant:0<64}"[:64],
                    logits=logits, runtime="ai_edge_litert", runtime_version="2.3.0",
                    delegate_applied=delegate_applied or delegate, batch_size=64,
                    timings=Timings(per_batch_s=(0.001,) * 4))
                writer.add_run(run, score_job(run, ref, test))
    return Path(path)


def _manifest(test: GroupedDataset, variants, targets, calibration_shares) -> dict:
    counts = test.group_counts()
    shares = calibration_shares or {g: 1.0 / len(counts) for g in counts}
    return {
        "config": {"experiment": {"name": "synthetic"}},
        "versions": {"qskew": harness.__version__, "python": "3.11", "ai-edge-litert": "2.3.0"},
        "dataset": {"name": "synthetic", "sha256": "d" * 64, "description": "synthetic <test> & groups",
                    "num_classes": test.num_classes, "group_counts": {"train": counts, "test": counts},
                    "attributes": list(test.attributes), "intersections": test.intersections},
        "model": {"source": "builtin", "name": "synthetic", "sha256": "m" * 64},
        "calibration": {"size": 64, "strategy": "balanced", "seed": 0, "group_shares": shares,
                        "sha256": "c" * 64},
        "variants": [{"variant": v, "sha256": f"{v:0<64}"[:64], "size_bytes": 1234, "recipe": {"name": v},
                      "error": None} for v in variants],
        "targets": {t: {"name": t, "kind": "local", "platform": "Linux <x86_64>", "python_version": "3.11"}
                    for t in targets},
    }


def add_job_scored_against_another_reference(run_dir: Path, job: tuple[str, str, str],
                                             spec: Mapping[str, tuple[float, float]], moved: int = 8,
                                             sizes: Mapping[str, int] = SIZES, data_seed: int = 0) -> Path:
    """Resume ``run_dir`` (written by :func:`make_run_dir` with ``sizes`` and ``data_seed``) and add
    ``job``, scored as a resumed session whose reference outputs were computed again (on another
    host) and moved ``moved`` near ties of the smallest group: the reference gets them wrong. The
    stored reference rows stay the first session's (``RunWriter.add_reference`` keeps them)."""
    test, z_ref = make_test_set(sizes, data_seed=data_seed)
    smallest = min(sizes, key=sizes.get)
    rows = np.flatnonzero((test.group == smallest) & (z_ref.argmax(axis=1) == test.y))[:moved]
    z_new = z_ref.copy()
    z_new[rows, test.y[rows]] = z_ref[rows].min(axis=1) - 0.01
    logits = variant_logits(z_ref, test.group, spec, noise_seed=99)
    run = DeviceRun(variant=job[0], target=job[1], delegate=job[2], artifact_sha256=f"{job[0]:0<64}"[:64],
                    logits=logits, runtime="ai_edge_litert", runtime_version="2.3.0", delegate_applied=job[2],
                    batch_size=64, timings=Timings(per_batch_s=(0.001,) * 4))
    with RunWriter(Path(run_dir), resume=True) as writer:
        writer.add_run(run, score_job(run, Logits(ids=test.ids.copy(), values=z_new), test))
    return Path(run_dir)
