"""Wall time of ``qskew signoff RUN_DIR`` side by side with the floors it cannot go below.

Each round runs, one after the other as fresh processes of the same interpreter (alternating, so
a busy moment of a shared machine hits all rows alike):

* ``python -c pass``                        the interpreter's own start;
* ``python -c "import numpy"``              numpy;
* ``... numpy, scipy.special``              the exact McNemar kernel (imported only when a group has
                                            b != c discordant pairs);
* ``python -c "import numpy, pandas"``      pandas, which the full path's tables need;
* ``... pandas, pyarrow.dataset``           plus the reader of the run's Parquet parts;
* ``qskew --help`` (``harness.cli``)        the command-line parser (every command registered);
* ``full path (pandas)``                    what signoff did before its light path, in one process:
                                            ``read_run`` + ``run_stats`` (predictions recomputed from
                                            the logits) + ``judge`` + the same two output files;
* ``qskew signoff RUN_DIR``                 the command itself (it rewrites RUN_DIR/signoff.json):
                                            the light path (JSON + CSV, cells from stored metrics).

It prints the best and the median of ``--rounds`` per row, signoff / each row (so signoff / full
path is the speed-up), and whether the best signoff meets the 1.0 s goal. A ``-X importtime``
breakdown of signoff's heaviest top-level imports follows with ``--imports``.

    .venv/bin/python benchmarks/signoff_time.py RUN_DIR [--rounds 7] [--imports]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 7          # odd, for a plain median; each round is a few seconds of processes
GOAL_S = 1.0        # issue 16: `qskew signoff RUN_DIR` <= 1.0 s
TOP_IMPORTS = 15    # lines of the -X importtime breakdown


# The full path: the command's steps as they were before the light reader (same outputs written).
FULL_PATH = """
import sys
from pathlib import Path
import harness.cli
from harness import rundir, signoff
from harness.metrics.stats import run_stats
run_dir = Path(sys.argv[1])
run = rundir.read_run(run_dir)
verdict = signoff.judge(run, run_stats(run), signoff.load_policy(None))
rundir.write_signoff(run_dir, verdict.to_json())
signoff.write_junit(verdict, rundir.signoff_junit_path(run_dir))
print(signoff.format_verdict(verdict))
"""


def rows(run_dir: Path) -> list[tuple[str, list[str]]]:
    py = sys.executable
    return [
        ("python -c pass", [py, "-c", "pass"]),
        ("import numpy", [py, "-c", "import numpy"]),
        ("+ scipy.special", [py, "-c", "import numpy, scipy.special"]),
        ("import numpy, pandas", [py, "-c", "import numpy, pandas"]),
        ("+ pyarrow.dataset", [py, "-c", "import numpy, pandas, pyarrow.dataset"]),
        ("qskew --help", [py, "-m", "harness.cli", "--help"]),
        ("full path (pandas)", [py, "-c", FULL_PATH, str(run_dir)]),
        ("qskew signoff RUN_DIR", [py, "-m", "harness.cli", "signoff", str(run_dir)]),
    ]


def wall_s(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):  # signoff exits 1 on FAIL: still a full run
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return took


def import_breakdown(run_dir: Path, env: dict) -> None:
    """signoff's top-level imports (the modules it asks for itself), heaviest first."""
    argv = [sys.executable, "-X", "importtime", "-m", "harness.cli", "signoff", str(run_dir)]
    err = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).stderr.decode()
    top = []
    for line in err.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            name = fields[2].rstrip()
            if len(name) - len(name.lstrip()) == 1:  # "| name": imported by no other module
                top.append((int(fields[1]), name.strip()))
    print("\nheaviest top-level imports of signoff (-X importtime, cumulative, one run):")
    for micros, name in sorted(top, reverse=True)[:TOP_IMPORTS]:
        print(f"  {micros / 1e6:6.3f} s  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--imports", action="store_true", help="also print signoff's heaviest imports")
    args = parser.parse_args()
    if not (args.run_dir / "manifest.json").exists():
        raise SystemExit(f"{args.run_dir} is not a run directory (no manifest.json)")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    table = rows(args.run_dir)
    times: dict[str, list[float]] = {name: [] for name, _ in table}
    for _ in range(args.rounds):
        for name, argv in table:
            times[name].append(wall_s(argv, env))
    best_signoff = min(times["qskew signoff RUN_DIR"])
    print(f"{'command':24} {'best_s':>7} {'median_s':>8} {'signoff/best':>12}")
    for name, _ in table:
        best = min(times[name])
        print(f"{name:24} {best:7.3f} {statistics.median(times[name]):8.3f} {best_signoff / best:12.2f}")
    print(f"signoff / full path (best of each): {best_signoff / min(times['full path (pandas)']):.2f}")
    print(f"signoff best {best_signoff:.3f} s, median {statistics.median(times['qskew signoff RUN_DIR']):.3f} s; "
          f"goal <= {GOAL_S:.1f} s: {'met' if best_signoff <= GOAL_S else 'NOT met'} "
          f"(load average {os.getloadavg()[0]:.1f})")
    if args.imports:
        import_breakdown(args.run_dir, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
