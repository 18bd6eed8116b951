"""Bytes pushed by a sweep over a sharded test set against the unique bytes it needs, in one run.

A synthetic test set (default 20,000 samples, 16x16x3 uint8, 4 groups) is cut into shards of
``--shard-samples`` (default 4096: 5 shards); a tiny Keras CNN is converted to 3 variants (fp32,
dynamic, int8) and ``harness.evaluate.evaluate`` runs the whole sweep (reference, conversions, one
device job per variant x shard, scoring, run directory) on each target in turn, each with a fresh
device: the local target (a child process on this machine) and a simulated ADB device (the real
ADB protocol on loopback). For each, the bytes pushed (the summary entries' ``transfer``) are
divided by the unique bytes the device needs: every shard's inputs file once + each variant's
.tflite once + the device runner's files once. Goal: <= 1.02 (each shard pushed once per device
and reused by the other variants; only the small job.json files come on top). ``--ray`` adds a
third sweep: the simulated device driven by the Ray executor (a one-node Ray started here, its
actor on the node advertising the device), whose actor pushes as the local executor does.

    .venv/bin/python benchmarks/shard_push.py [--samples 20000] [--shard-samples 4096] [--ray]

The qskew cache is a temporary folder (fresh devices), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLES = 20_000
SHARD_SAMPLES = 4096
TRAIN_SAMPLES = 512          # calibration rows (the train split)
SHAPE = (16, 16, 3)          # small enough to convert and run in seconds, large enough that inputs dominate
VARIANTS = ("fp32", "dynamic", "int8")
GROUPS = ("a", "b", "c", "d")
NUM_CLASSES = 10
GOAL = 1.02


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--shard-samples", type=int, default=SHARD_SAMPLES)
    parser.add_argument("--ray", action="store_true", help="also run the simulated device with the Ray executor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qskew-shard-push-") as tmp:
        os.environ["QSKEW_CACHE_DIR"] = str(Path(tmp) / "cache")
        data, source = _dataset(args.samples), _model()
        ratios = [_sweep(Path(tmp), reach, data, source, args.shard_samples) for reach in ("local", "simulated")]
        if args.ray:
            ratios.append(_ray_sweep(Path(tmp), data, source, args.shard_samples))
    ok = all(r <= GOAL for r in ratios)
    print(f"\nbytes pushed / unique bytes: {', '.join(f'{r:.4f}' for r in ratios)}   goal: <= {GOAL}  "
          f"{'ok' if ok else 'OVER'}")
    return 0 if ok else 1


def _dataset(n: int):
    import numpy as np

    from harness.records import GroupedDataset, Preprocess

    total = n + TRAIN_SAMPLES
    rng = np.random.default_rng(0)
    return GroupedDataset(
        name="synthetic", ids=np.array([f"s{i:07d}" for i in range(total)]),
        x=rng.integers(0, 256, size=(total,) + SHAPE, dtype=np.uint8), y=rng.integers(0, NUM_CLASSES, total),
        group=np.array(GROUPS)[rng.integers(0, len(GROUPS), total)],
        split=np.array(["train"] * TRAIN_SAMPLES + ["test"] * n), num_classes=NUM_CLASSES,
        preprocess=Preprocess(scale=1.0 / 255.0, offset=0.0))


def _model():
    import keras

    from harness.evaluate import ModelSource

    keras.utils.set_random_seed(0)
    inp = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    return ModelSource(keras.Model(inp, keras.layers.Dense(NUM_CLASSES)(x)), {"source": "benchmark", "sha256": "b" * 64})


def _ray_sweep(tmp: Path, data, source, shard_samples: int) -> float:
    """The simulated device's sweep with the Ray executor, on a one-node Ray started here."""
    import ray

    from harness.farm.ray_executor import resource_of

    root = str(Path(__file__).resolve().parents[1])  # the actor's worker imports qskew from here
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=1, resources={resource_of("bench-simulated-ray"): 1}, include_dashboard=False,
             logging_level="WARNING")
    try:
        return _sweep(tmp, "simulated", data, source, shard_samples, executor="ray")
    finally:
        ray.shutdown()


def _sweep(tmp: Path, reach: str, data, source, shard_samples: int, executor: str = "local") -> float:
    from harness import config, rundir
    from harness.evaluate import evaluate
    from harness.paths import cache_dir
    from harness.runners.python import RUNNER_DIR, RUNNER_FILES

    name = f"bench-{reach}" + ("-ray" if executor == "ray" else "")
    devices = tmp / f"devices-{name}.toml"
    devices.write_text(f'[[device]]\nname = "{name}"\nreach = "{reach}"\n'
                       + (f'workdir = "{tmp / "local-device"}"\n' if reach == "local" else ""))
    exp = config.from_dict({"quantize": {"variants": list(VARIANTS), "calibration_size": 256},
                            "run": {"targets": [name], "devices_file": str(devices),
                                    "shard_samples": shard_samples, "executor": executor}}, source="benchmark")
    out = tmp / f"run-{name}"
    evaluate(exp, data, source, out, progress=False)
    run = rundir.read_run(out)
    entries = run.summary["runs"]
    failed = [(e["variant"], e["error"]) for e in entries if e["status"] != "ok"]
    pushed = sum(e["transfer"]["bytes_pushed"] for e in entries if e["transfer"])
    by_kind = {k: sum(e["transfer"].get("pushed", {}).get(k, 0) for e in entries if e["transfer"])
               for k in ("inputs", "model", "runner", "job")}
    shard_shas = {s["sha256"] for e in entries for s in e.get("shards") or []}
    inputs = sum((cache_dir("inputs") / f"{sha}.npy").stat().st_size for sha in shard_shas)
    models = sum(v["size_bytes"] for v in run.manifest["variants"] if v.get("size_bytes"))
    runner = sum((RUNNER_DIR / f).stat().st_size for f in RUNNER_FILES)
    unique = inputs + models + runner
    n_shards = max(len(e.get("shards") or []) for e in entries)
    print(f"{name}: {len(entries)} jobs x {n_shards} shards ({len(data.subset('test'))} samples, "
          f"shard_samples {shard_samples})" + (f"; FAILED: {failed}" if failed else ""))
    print(f"   pushed {pushed} bytes (inputs {by_kind['inputs']}, models {by_kind['model']}, "
          f"runner {by_kind['runner']}, job.json {by_kind['job']})")
    print(f"   unique: {len(shard_shas)} shards {inputs} + models {models} + runner {runner} = {unique} bytes")
    print(f"   ratio {pushed / unique:.4f}")
    return pushed / unique


if __name__ == "__main__":
    sys.exit(main())
