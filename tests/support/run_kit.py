"""Small run directories for the run-directory tests: a tiny test set, noisy logits, and a run
written with the real RunWriter and scores from the real metrics stage. Imported as ``support.run_kit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits, Timings
from harness.rundir import RunWriter

N_SAMPLES, N_CLASSES = 60, 4
JOBS = [("int8", "local", "xnnpack"), ("float16", "local", "reference")]
MANIFEST = {"config": {"experiment": {"name": "t"}}, "dataset": {"name": "tiny", "sha256": "d" * 64},
            "model": {"sha256": "m" * 64}}


def dataset(n: int = N_SAMPLES, seed: int = 0) -> GroupedDataset:
    rng = np.random.default_rng(seed)
    return GroupedDataset(
        name="tiny", ids=np.array([f"id{i:03d}" for i in range(n)]), x=np.zeros((n, 0), np.uint8),
        y=rng.integers(0, N_CLASSES, n).astype(np.int64),
        group=np.array(["north", "south", "east"])[rng.integers(0, 3, n)],
        split=np.full(n, "test"), num_classes=N_CLASSES)


def logits(test: GroupedDataset, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(test), N_CLASSES)).astype(np.float32)
    z[np.arange(len(test)), test.y] += 1.0  # a model that is right more often than chance
    return z


def device_run(job, z, **extra) -> DeviceRun:
    variant, target, delegate = job
    return DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256="a" * 64, logits=z,
                     runtime="ai_edge_litert", runtime_version="2.3.0", delegate_applied=delegate,
                     batch_size=16, **extra)


def add_run(writer: RunWriter, run: DeviceRun, ref: Logits, test: GroupedDataset) -> None:
    """Score ``run`` with the metrics stage and hand it to the writer, as the scheduler does."""
    writer.add_run(run, score_job(run, ref, test) if run.ok else None)


def write_small_run(run_dir: Path):
    """A run directory with the reference, two finished jobs and one failed job:
    (run_dir, writer, test, ref)."""
    test = dataset()
    z_ref = logits(test, 1)
    order = np.random.default_rng(9).permutation(len(test))
    ref = Logits(ids=test.ids[order], values=z_ref[order])  # reference arrives in another order
    writer = RunWriter(run_dir)
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    for seed, job in enumerate(JOBS, start=2):
        z = z_ref + np.random.default_rng(seed).normal(scale=0.6, size=z_ref.shape).astype(np.float32)
        # the runner's timings format; int8's on-device stage also set latency_ms_per_sample
        timings = Timings(invoke_s=0.0091, per_batch_s=(0.003, 0.003, 0.003), total_s=0.02,
                          latency_ms_per_sample=0.25 if job[0] == "int8" else None)
        add_run(writer, device_run(job, z, timings=timings), ref, test)
    writer.add_failure("int16x8", "local", "xnnpack", "converter said no", stage="convert")
    return run_dir, writer, test, ref


# Names that look alike when cut to a table's default column width (12 for groups, 8-12 for devices).
LOOKALIKE_GROUPS = ("north-east-rural-elderly", "north-east-rural-children")
LOOKALIKE_DEVICES = ("pixel-7-pro-bench-left", "pixel-7-pro-bench-right")


def write_lookalike_run(run_dir: Path) -> Path:
    """A run whose two groups and two devices share their first 16 characters: tables must show
    them whole. Jobs: int8 on both devices (xnnpack) and on the first one's reference kernels."""
    import dataclasses

    test = dataset()
    test = dataclasses.replace(test, group=np.array(LOOKALIKE_GROUPS)[np.arange(len(test)) % 2])
    z_ref = logits(test, 1)
    ref = Logits(ids=test.ids, values=z_ref)
    jobs = [("int8", LOOKALIKE_DEVICES[0], "xnnpack"), ("int8", LOOKALIKE_DEVICES[1], "xnnpack"),
            ("int8", LOOKALIKE_DEVICES[0], "reference")]
    with RunWriter(run_dir) as writer:
        writer.write_manifest(MANIFEST)
        writer.add_reference(ref, test)
        for seed, job in enumerate(jobs, start=2):
            z = z_ref + np.random.default_rng(seed).normal(scale=0.8, size=z_ref.shape).astype(np.float32)
            add_run(writer, device_run(job, z), ref, test)
    return run_dir
