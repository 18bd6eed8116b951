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
* ``light + McNemar (scipy)``               the light path as it was before it stopped computing
                                            McNemar p-values that no rule judges (scipy imported
                                            when a group has b != c discordant pairs);
* ``qskew signoff RUN_DIR``                 the command itself (it rewrites RUN_DIR/signoff.json):
                                            the light path (JSON + CSV, cells from stored metrics).

It prints the best and the median of ``--rounds`` per row, signoff / each row (so signoff / full
path is the speed-up), and whether the best signoff meets the 1.0 s goal. A ``-X importtime``
breakdown of signoff's heaviest top-level imports follows with ``--imports``.

``--synthetic JOBS`` times a run it writes first instead of RUN_DIR (into a temporary folder, with
the real RunWriter and scorer): JOBS jobs on a test set of 5,420 samples in 12 cells of three
attributes (sex x race x age, intersections reported), so 4 families of groups per job, the
bootstrap's unit of work.

    .venv/bin/python benchmarks/signoff_time.py RUN_DIR [--rounds 7] [--imports]
    .venv/bin/python benchmarks/signoff_time.py --synthetic 20 [--rounds 7]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 7          # odd, for a plain median; each round is a few seconds of processes
GOAL_S = 1.0        # issue 16: `qskew signoff RUN_DIR` <= 1.0 s
TOP_IMPORTS = 15    # lines of the -X importtime breakdown
# --synthetic: cells of sex x race x age and their test samples (an uneven split, two cells under 100)
CELL_SIZES = dict(zip(("\u00d7".join(c) for c in itertools.product("FM", "ABC", "YO")),
                      (900, 300, 700, 120, 400, 90, 1000, 350, 800, 150, 500, 110)))
VARIANTS = ("fp32", "int8", "dynamic", "float16", "int16x8")


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


# The light path with the McNemar p-values it computed before (scipy's binomial CDF).
LIGHT_WITH_MCNEMAR = """
import sys
from pathlib import Path
import harness.cli
from harness import rundir, signoff
from harness.metrics.stats import cell_stats
from harness.rundir.light import read_light
run_dir = Path(sys.argv[1])
run = read_light(run_dir)
verdict = signoff.judge(run, cell_stats(run.cells, mcnemar=True), signoff.load_policy(None))
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
        ("light + McNemar (scipy)", [py, "-c", LIGHT_WITH_MCNEMAR, str(run_dir)]),
        ("qskew signoff RUN_DIR", [py, "-m", "harness.cli", "signoff", str(run_dir)]),
    ]


def wall_s(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):  # signoff exits 1 on FAIL: still a full run
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return took


def synthetic_run(run_dir: Path, jobs: int) -> Path:
    """Write a run of ``jobs`` jobs (variants cycled, five per device) on the CELL_SIZES test set."""
    import numpy as np

    from harness.metrics.score import score_job
    from harness.records import DeviceRun, GroupedDataset, Logits, Timings
    from harness.rundir import RunWriter

    rng = np.random.default_rng(0)
    group = np.array([cell for cell, n in CELL_SIZES.items() for _ in range(n)])
    n, k = group.size, 4
    labels = rng.integers(0, k, n).astype(np.int64)
    z_ref = rng.normal(size=(n, k)).astype(np.float32)
    z_ref[np.arange(n), labels] += 2.6
    test = GroupedDataset(name="synthetic", ids=np.array([f"s{i:05d}" for i in range(n)]), x=np.zeros((n, 0), np.uint8),
                          y=labels, group=group, split=np.full(n, "test"), num_classes=k,
                          attributes=("sex", "race", "age"), intersections=True)
    ref = Logits(ids=test.ids, values=z_ref)
    counts = test.group_counts()
    with RunWriter(run_dir) as writer:
        writer.write_manifest({"config": {"experiment": {"name": "signoff_time"}},
                               "dataset": {"name": "synthetic", "sha256": "d" * 64, "num_classes": k,
                                           "group_counts": {"train": counts, "test": counts},
                                           "attributes": list(test.attributes), "intersections": True},
                               "model": {"source": "builtin", "name": "synthetic", "sha256": "m" * 64}})
        writer.add_reference(ref, test)
        for i in range(jobs):
            shrink = np.where(np.char.find(group, "C") >= 0, 0.5 + 0.1 * (i % 5), 0.95)[:, None]
            logits = (z_ref * shrink + rng.normal(0, 0.5, z_ref.shape)).astype(np.float32)
            run = DeviceRun(variant=VARIANTS[i % len(VARIANTS)], target=f"device{i // len(VARIANTS)}",
                            delegate="xnnpack", artifact_sha256="a" * 64, logits=logits, runtime="ai_edge_litert",
                            runtime_version="2.3.0", delegate_applied="xnnpack", timings=Timings(per_batch_s=(0.001,)))
            writer.add_run(run, score_job(run, ref, test))
    return run_dir


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
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--imports", action="store_true", help="also print signoff's heaviest imports")
    parser.add_argument("--synthetic", type=int, metavar="JOBS", help="time a synthetic run of JOBS jobs instead")
    args = parser.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    if args.synthetic:
        sys.path.insert(0, root)
        args.run_dir = synthetic_run(Path(tempfile.mkdtemp(prefix="signoff_time-")) / "run", args.synthetic)
        print(f"synthetic run: {args.synthetic} jobs x 4 families of groups, {sum(CELL_SIZES.values())} "
              f"test samples: {args.run_dir}")
    if args.run_dir is None or not (args.run_dir / "manifest.json").exists():
        raise SystemExit(f"{args.run_dir} is not a run directory (no manifest.json); or give --synthetic JOBS")
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
    print(f"signoff / full path (best of each): {best_signoff / min(times['full path (pandas)']):.2f}; "
          f"signoff / light + McNemar: {best_signoff / min(times['light + McNemar (scipy)']):.2f}")
    print(f"signoff best {best_signoff:.3f} s, median {statistics.median(times['qskew signoff RUN_DIR']):.3f} s; "
          f"goal <= {GOAL_S:.1f} s: {'met' if best_signoff <= GOAL_S else 'NOT met'} "
          f"(load average {os.getloadavg()[0]:.1f})")
    if args.imports:
        import_breakdown(args.run_dir, env)
    if args.synthetic:
        shutil.rmtree(args.run_dir.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
