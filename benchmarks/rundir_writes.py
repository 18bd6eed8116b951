"""Bytes written per byte kept: the run-directory writer driven with 200 synthetic jobs.

Writes the reference rows and then ``--jobs`` jobs of ``--samples`` samples x ``--classes`` logits
(each with its per-group metrics, placement and summary entry; every tenth job fails, so summaries
of both kinds are written) through ``harness.rundir.RunWriter`` into a fresh run directory, and
prints

    written / final size = (bytes this process wrote while inside the writer's calls)
                           / (sum of the sizes of the run directory's files at the end)

The bytes written are the growth of ``wchar`` in ``/proc/self/io`` across each writer call: every
byte the process handed to write(2) and friends, from any thread, whether it ended up in a kept
file, a temporary file that was renamed, or one that was deleted. Scoring (``score_job``) runs
outside those calls, as it does in a sweep, and writes nothing. The goal is a ratio <= 1.2 (a
writer that rewrote its files per job would be ~jobs/2). It also prints the seconds spent in the
writer per job for the first and the last 20 jobs: writing cost must not grow with the job count.

    .venv/bin/python benchmarks/rundir_writes.py [--jobs 200] [--samples 10000] [--classes 10] [--dir DIR]

Linux only (``/proc/self/io``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.metrics.score import score_job
from harness.records import DeviceRun, ExecutionPlan, GroupedDataset, Logits, Timings
from harness.rundir import RunWriter

GROUPS = ("a", "b", "c", "d", "e", "f", "g", "h")  # eight groups, as a demographic split might have
WINDOW = 20       # jobs averaged at the start and at the end of the sweep
FAIL_EVERY = 10   # every tenth job fails (a summary part only)
GOAL = 1.2


def wchar() -> int:
    """Bytes this process has written so far (all threads), from /proc/self/io."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def test_set(n: int, k: int, rng) -> tuple[GroupedDataset, np.ndarray]:
    labels = rng.integers(0, k, n).astype(np.int64)
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[np.arange(n), labels] += 2.0
    test = GroupedDataset(name="bench", ids=np.array([f"s{i:06d}" for i in range(n)]), x=np.zeros((n, 0), np.uint8),
                          y=labels, group=np.array(GROUPS)[rng.integers(0, len(GROUPS), n)],
                          split=np.full(n, "test"), num_classes=k)
    return test, z


class Meter:
    """Bytes written and seconds spent inside the writer's calls."""

    def __init__(self):
        self.bytes, self.seconds = 0, []

    def __call__(self, call, *args, **kwargs):
        before, start = wchar(), time.perf_counter()
        call(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        self.bytes += wchar() - before


def sweep(run_dir: Path, jobs: int, n: int, k: int) -> Meter:
    rng = np.random.default_rng(0)
    test, z_ref = test_set(n, k, rng)
    ref = Logits(test.ids, z_ref)
    meter = Meter()
    writer = RunWriter(run_dir)
    meter(writer.write_manifest, {"config": {"experiment": {"name": "bench"}}, "dataset": {"sha256": "d"}})
    meter(writer.add_reference, ref, test)
    meter.seconds.clear()
    plan = ExecutionPlan.from_json({"available": True, "source": "interpreter",
                                    "placement": [{"node": i, "op": "CONV_2D", "on": "delegate"} for i in range(20)]})
    for i in range(jobs):
        job = (f"v{i % 7}", f"device-{i // 7}", "xnnpack")
        if i % FAIL_EVERY == FAIL_EVERY - 1:
            meter(writer.add_failure, *job, error="delegate failed to prepare", stage="run")
            continue
        z = z_ref + rng.normal(scale=0.5, size=z_ref.shape).astype(np.float32)
        run = DeviceRun(*job, artifact_sha256="a" * 64, logits=z, runtime="ai_edge_litert", runtime_version="2.3.0",
                        delegate_applied="xnnpack", batch_size=64, timings=Timings.from_json({"per_batch_s": [0.001] * 10}),
                        execution_plan=plan)
        score = score_job(run, ref, test)
        meter(writer.add_run, run, score)
    return meter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent folder of the run directory (default: a temp dir)")
    args = parser.parse_args(argv)
    parent = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        run_dir = parent / "run"
        meter = sweep(run_dir, args.jobs, args.samples, args.classes)
        final = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        files = sum(1 for p in run_dir.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    ratio = meter.bytes / final
    first, last = meter.seconds[:WINDOW], meter.seconds[-WINDOW:]
    print(f"{args.jobs} jobs x {args.samples} samples x {args.classes} logits: {files} files")
    print(f"written {meter.bytes / 1e6:.1f} MB, final size {final / 1e6:.1f} MB, "
          f"written / final size = {ratio:.3f} (goal <= {GOAL})")
    print(f"writer s/job: first {WINDOW} jobs {np.mean(first):.4f}, last {WINDOW} jobs {np.mean(last):.4f} "
          f"(ratio {np.mean(last) / np.mean(first):.2f})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
