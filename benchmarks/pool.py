"""Jobs per second of a pool of 4 devices against a single device, measured side by side in one run.

Two figures, each the ratio (pool of 4 jobs/s) / (one device jobs/s):

1. **Sleeping stand-in runners** (goal >= 3): the farm's real path -- one queue per pool, a worker
   thread per member, a device lease per job, scoring and the run-directory writer -- with the
   device's work replaced by a runner that sleeps ``--job-s`` seconds and returns the reference
   logits plus noise. This is what a rack of phones looks like to the host: the host waits while
   the devices compute. (A 2-core host cannot show 4 devices' real inference in parallel.) The
   host's own work per job (scoring and writing, which hold the GIL and so run one at a time) is
   measured too (a sweep with 0 s jobs) and printed: it is what bounds the ratio.
2. **Real runners**: the same sweep over simulated ADB devices (``reach = "simulated"``: real ADB,
   the real device runner and LiteRT, all on this host), small_cnn on digits-groups. On a machine
   with few cores the devices share the CPU, so this ratio says how much the farm's own overhead
   lets the pool overlap (transfers, process starts), not what real phones would give.

    .venv/bin/python benchmarks/pool.py [--jobs 16] [--job-s 2.0] [--no-real]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import config  # noqa: E402
from harness.farm import runners, schedule  # noqa: E402
from harness.farm.inventory import from_dict  # noqa: E402
from harness.records import DeviceRun, GroupedDataset, Logits, ModelArtifact  # noqa: E402
from harness.rundir import RunWriter  # noqa: E402

POOL_SIZE = 4
GOAL = 3.0
SAMPLES, CLASSES = 719, 10  # the demo's test set: digits-groups' 719 test samples, 10 classes
JOB_S = 2.0  # a stand-in job: about what one real job of the demo takes on a simulated device here
             # (the real-runner figure below measures 1.3-1.8 s per job on one device)
REAL_VARIANTS = ["fp32", "int8", "float16", "dynamic"]
REAL_DELEGATES = ["xnnpack", "reference"]


def standin_sweep(scratch: Path, devices: int, jobs: int, job_s: float) -> float:
    """Seconds for ``jobs`` stand-in jobs on a pool of ``devices`` (the farm's path, sleeping runners)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, SAMPLES)
    test = GroupedDataset(name="bench", ids=np.array([f"s{i}" for i in range(SAMPLES)]), x=np.zeros((SAMPLES, 0)),
                          y=labels, group=np.array(["a", "b"])[rng.integers(0, 2, SAMPLES)],
                          split=np.full(SAMPLES, "test"), num_classes=CLASSES)
    ref = Logits(test.ids, rng.normal(size=(SAMPLES, CLASSES)).astype(np.float32))

    def sleeping_runner(spec, target, artifact, test, delegate, progress=None, **_options):
        for done in (SAMPLES // 2, SAMPLES):
            time.sleep(job_s / 2)
            if progress:
                progress(done, SAMPLES)
        noise = np.random.default_rng(len(artifact.variant)).normal(0, 0.05, ref.values.shape).astype(np.float32)
        return DeviceRun(variant=artifact.variant, target=spec.name, delegate=delegate,
                         artifact_sha256=artifact.sha256, logits=ref.values + noise)

    inventory = from_dict({"device": [{"name": f"stand-in-{i}", "reach": "local", "pool": "bench"}
                                      for i in range(devices)]})
    opened = [schedule.OpenDevice(spec, None, {}) for spec in inventory.select(["bench"])]
    exp = config.from_dict({"run": {"targets": ["bench"], "delegates": ["xnnpack"]}}, source="benchmark")
    artifacts = [ModelArtifact(f"v{i:03d}", Path("stand-in.tflite"), f"sha{i}", 1, (), (), {}) for i in range(jobs)]
    real_runner, runners.run_on_device = runners.run_on_device, sleeping_runner
    try:
        with RunWriter(scratch / f"standin-{devices}-{jobs}-{job_s:g}") as writer:
            writer.add_reference(ref, test)
            start = time.perf_counter()
            schedule.run_sweep(exp, artifacts, opened, test, ref, writer, False, lambda s: None)
            return time.perf_counter() - start
    finally:
        runners.run_on_device = real_runner


def real_sweep(scratch: Path, devices: int, warm: bool = False) -> float:
    """Seconds of the sweep (``schedule.run_sweep``) of small_cnn's variants on a pool of simulated devices."""
    from harness import datasets
    from harness.evaluate import ModelSource, evaluate
    from models.train import train_or_load

    data = datasets.load("digits-groups")
    model = train_or_load("small_cnn", data, seed=0, progress=False).model
    inventory = scratch / f"devices-{devices}.toml"
    inventory.write_text("".join(f'[[device]]\nname = "bench-sim-{i}"\nreach = "simulated"\npool = "sims"\n'
                                 for i in range(devices)))
    exp = config.from_dict({"quantize": {"variants": REAL_VARIANTS},
                            "run": {"targets": ["sims"], "devices_file": str(inventory), "delegates": REAL_DELEGATES}},
                           source="benchmark")
    seconds = []
    real_sweep_fn = schedule.run_sweep

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real_sweep_fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    schedule.run_sweep = timed
    try:
        evaluate(exp, data, ModelSource(model, {"source": "benchmark", "sha256": "bench"}),
                 scratch / f"real-{devices}{'-warm' if warm else ''}", progress=False)
    finally:
        schedule.run_sweep = real_sweep_fn
    return seconds[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16, help="stand-in jobs per sweep")
    ap.add_argument("--job-s", type=float, default=JOB_S, help="seconds a stand-in job sleeps (a device's job)")
    ap.add_argument("--no-real", action="store_true", help="only the stand-in figure")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="qskew-pool-bench-"))
    os.environ.setdefault("QSKEW_FARM_DIR", str(scratch / "farm"))
    host_s = standin_sweep(scratch, 1, 4, 0.0) / 4
    one = standin_sweep(scratch, 1, args.jobs, args.job_s)
    pool = standin_sweep(scratch, POOL_SIZE, args.jobs, args.job_s)
    ratio = one / pool
    print(f"stand-in runners ({args.jobs} jobs x {args.job_s} s): 1 device {args.jobs / one:.2f} jobs/s, pool of "
          f"{POOL_SIZE} {args.jobs / pool:.2f} jobs/s: ratio {ratio:.2f} (goal >= {GOAL:g}) "
          f"{'OK' if ratio >= GOAL else 'BELOW GOAL'}; host work per job {host_s:.3f} s")
    if not args.no_real:
        jobs = len(REAL_VARIANTS) * len(REAL_DELEGATES)
        real_sweep(scratch, POOL_SIZE, warm=True)  # converts the variants and installs the runner once
        one = real_sweep(scratch, 1)
        pool = real_sweep(scratch, POOL_SIZE)
        print(f"real runners on simulated devices ({jobs} jobs, {os.cpu_count()} CPU cores): 1 device "
              f"{jobs / one:.2f} jobs/s, pool of {POOL_SIZE} {jobs / pool:.2f} jobs/s: ratio {one / pool:.2f}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
