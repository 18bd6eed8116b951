"""How long ``qskew bisect`` takes for 50 samples of the demo model (goal: under 2 minutes).

Makes a demo run (``qskew demo --variants int8``, with ``--board aarch64`` also on the emulated
board) unless ``--run`` names one, then times ``bisect`` for 25 samples per group (the demo has two
groups: 50 samples) with both jobs run again as tensor jobs, and prints the wall time, each job's
runner time and the ratio to the goal:

    .venv/bin/python benchmarks/bisect_time.py                      # int8/local/xnnpack vs int8/local/reference
    .venv/bin/python benchmarks/bisect_time.py --board aarch64      # int8/board-aarch64/builtin vs int8/local/reference

The demo run's own time (training from an empty cache, conversion) is not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import cli  # noqa: E402
from harness.bisect.run import BisectOptions, bisect  # noqa: E402
from harness.metrics.bisect import summary_lines  # noqa: E402

GOAL_S = 120.0
PER_GROUP = 25


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="an existing demo run (default: make one)")
    ap.add_argument("--board", default="", help="also run on this emulated board (aarch64)")
    args = ap.parse_args()
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="qskew-bisect-bench-")) / "run"
        extra = ["--board", args.board] if args.board else ["--delegates", "xnnpack,reference"]
        if cli.main(["demo", "--variants", "int8", "--out", str(run), "--no-progress", *extra]) != 0:
            return 1
    job_a = f"int8/board-{args.board}/builtin" if args.board else "int8/local/xnnpack"
    start = time.perf_counter()
    result = bisect(run, BisectOptions(job_a, "int8/local/reference", per_group=PER_GROUP))
    wall_s = time.perf_counter() - start
    a, b = result.dumps
    print("\n".join(summary_lines(result.summary, result.choice.rule)))
    print(f"bisect {job_a} vs int8/local/reference, {len(result.choice.ids)} samples ({result.choice.rule}): "
          f"{wall_s:.1f} s wall (job A runner {a.run_s:.1f} s, job B runner {b.run_s:.1f} s); "
          f"goal {GOAL_S:.0f} s, ratio {wall_s / GOAL_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
