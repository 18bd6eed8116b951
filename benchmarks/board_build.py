"""How long a board takes to build, and how much slower the board runs the tiny int8 model than the host.

Prints, for one architecture:

- build time from an empty cache (a fresh QSKEW_CACHE_DIR: apt-get download of ~40 Debian packages,
  dpkg -x, pip download/install of the runtime's wheels) and from a warm one (the board is reused);
- per-sample time of the tiny int8 model (tests/support/tiny_models.py) through the device runner
  on the board (qemu-user) and on the host, with each kernel set, and their ratio (board / host).
  Per-sample time is the runner's ``invoke_s`` / samples (inference only, not the start of Python,
  which under qemu takes seconds).

    .venv/bin/python benchmarks/board_build.py [--arch aarch64] [--samples 256]

Needs root and .ci/board-setup (qemu-user-static, arm64/armhf enabled in dpkg).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.targets.board.build import build_board  # noqa: E402
from harness.targets.board.spec import BoardSpec  # noqa: E402
from tests.support import tiny_models  # noqa: E402
from tests.support.board_jobs import lay_out_job, run_job_in_board, run_job_on_host, step_diffs  # noqa: E402

DELEGATES = ("xnnpack", "builtin", "reference")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="aarch64")
    ap.add_argument("--samples", type=int, default=256)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="qskew-board-bench-"))
    os.environ["QSKEW_CACHE_DIR"] = str(scratch / "cache")  # an empty cache: a cold build
    spec = BoardSpec(args.arch)
    start = time.perf_counter()
    board = build_board(spec)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    build_board(spec)
    warm_s = time.perf_counter() - start
    print(f"board {args.arch}: build from an empty cache {cold_s:.1f} s, from a warm cache {warm_s:.3f} s")
    model = tiny_models.build_models(scratch / "models")["int8"]
    x = tiny_models.make_inputs(args.samples, seed=5)
    print(f"tiny int8 model, {args.samples} samples, 1 thread, batch 16 (per-sample inference time):")
    for delegate in DELEGATES:
        lay_out_job(scratch / f"b-{delegate}", "job", model, x, delegate)
        lay_out_job(scratch / f"h-{delegate}", "job", model, x, delegate)
        t0 = time.perf_counter()
        b_out, b_res = run_job_in_board(board, scratch / f"b-{delegate}", "job")
        b_wall = time.perf_counter() - t0
        h_out, h_res = run_job_on_host(scratch / f"h-{delegate}", "job")
        b_us = b_res["timings"]["invoke_s"] / args.samples * 1e6
        h_us = h_res["timings"]["invoke_s"] / args.samples * 1e6
        n_diff, steps = step_diffs(b_out, h_out)
        print(f"  {delegate:9s} board {b_us:8.1f} us  host {h_us:6.1f} us  ratio {b_us / h_us:6.1f}x  "
              f"(board job wall {b_wall:.1f} s; logits differing {n_diff}/{b_out.size}, max {steps} step)")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
