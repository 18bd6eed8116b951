"""The time cost of glibc's fixed mmap threshold (``harness/records/heap.py``) on the host's own work.

A job of ``--samples`` samples (10 classes, 4 groups, synthetic logits) is scored
(``metrics.score.score_job``) and its predictions written as parquet (``rundir.writer``), twice, in a
child process started with glibc's default malloc and in one that fixes the threshold as ``qskew``
does (or at ``--threshold`` bytes), alternately ``--rounds`` times. Prints each mode's times and the
ratio of their best.

    .venv/bin/python benchmarks/heap_time.py [--samples 300000] [--rounds 3] [--threshold 131072]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("default", "fixed")
CHILD = r"""
import sys, tempfile, time
from pathlib import Path
import numpy as np
from harness.records.heap import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(int(sys.argv[3])), "no glibc mallopt here"
from harness.metrics.score import score_job
from harness.records import DeviceRun, GroupedDataset, Logits
from harness.rundir.writer import predictions_tables, write_parquet
n, k = int(sys.argv[2]), 10
rng = np.random.default_rng(0)
test = GroupedDataset(name="synthetic", ids=np.char.add("s", np.arange(n).astype("<U7")), x=np.zeros((n, 1), np.uint8),
                      y=rng.integers(0, k, n), group=np.array(["a", "b", "c", "d"])[rng.integers(0, 4, n)],
                      split=np.full(n, "test"), num_classes=k)
z_ref = rng.normal(size=(n, k)).astype(np.float32)
run = DeviceRun("int8", "local", "xnnpack", "a" * 64, z_ref + rng.normal(scale=0.5, size=(n, k)).astype(np.float32))
start = time.perf_counter()
for _ in range(2):
    score = score_job(run, Logits(ids=test.ids, values=z_ref), test)
    with tempfile.TemporaryDirectory() as folder:
        write_parquet(Path(folder) / "part.parquet",
                      predictions_tables(score.job, score.ids, score.groups, score.labels, None, score.logits))
print(time.perf_counter() - start)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=None, help="bytes (default: qskew's, records/heap.py)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from harness.records.heap import MMAP_THRESHOLD_BYTES

    threshold = args.threshold or MMAP_THRESHOLD_BYTES
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            done = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.samples), str(threshold)], capture_output=True,
                                  text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{mode} child failed:\n{done.stderr[-3000:]}")
            times[mode].append(float(done.stdout.split()[-1]))
    for mode in MODES:
        print(f"{mode:>8}: " + ", ".join(f"{t:.2f} s" for t in times[mode]))
    print(f"fixed at {threshold:,} bytes / default (best of {args.rounds}): {min(times['fixed']) / min(times['default']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
