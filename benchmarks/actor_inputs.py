"""What a Ray actor's job pays for its shard's inputs file: written and hashed anew, or reused.

Ray hands an actor a new copy of a shard's rows with every job (each call deserializes its
arguments), so on_device's per-object memory of inputs files misses. Before the fix every job wrote
the shard's .npy into the node's cache and hashed it again; now the actor remembers the sha256 of
the files it wrote (``DeviceWorker.inputs``) and reuses the file
(:func:`harness.on_device.reuse_inputs_file`). Both paths are timed side by side in one process,
alternating, on a fresh pickled copy of a synthetic shard (``--shard-samples`` uint8 images of
``--side`` x ``--side`` x 3) per round; the copy itself (what Ray's deserialization costs, the same
for both) is not timed. Prints the median seconds per job of each and their ratio.

    .venv/bin/python benchmarks/actor_inputs.py [--shard-samples 4096] [--side 160] [--rounds 5]

The qskew cache is a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARD_SAMPLES = 4096   # the default [run] shard_samples
SIDE = 160             # a face crop's size, so a shard is ~315 MB
ROUNDS = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-samples", type=int, default=SHARD_SAMPLES)
    parser.add_argument("--side", type=int, default=SIDE)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qskew-actor-inputs-") as tmp:
        os.environ["QSKEW_CACHE_DIR"] = str(Path(tmp) / "cache")
        from harness import on_device

        shard = pickle.dumps(_shard(args.shard_samples, args.side))
        sha = on_device._inputs_file(pickle.loads(shard))[1]  # the first job's
        before, after = [], []
        for _ in range(args.rounds):
            data = pickle.loads(shard)  # a new copy, as Ray gives each call
            t = time.perf_counter()
            assert on_device._write_inputs_file(data)[1] == sha  # what every job paid before
            before.append(time.perf_counter() - t)
            data = pickle.loads(shard)
            t = time.perf_counter()
            assert on_device.reuse_inputs_file(data, sha) and on_device.known_inputs_sha(data) == sha
            after.append(time.perf_counter() - t)
    mb = args.shard_samples * args.side * args.side * 3 / 1e6
    b, a = statistics.median(before), statistics.median(after)
    print(f"shard of {args.shard_samples} x {args.side}x{args.side}x3 uint8 ({mb:.0f} MB), median of {args.rounds}:")
    print(f"  written and hashed per job (before): {b:.3f} s")
    print(f"  reused per job (now):                {a * 1e3:.3f} ms")
    print(f"  ratio before / now:                  {b / a:.0f}x")
    return 0


def _shard(n: int, side: int):
    import numpy as np

    from harness.records import GroupedDataset, Preprocess

    rng = np.random.default_rng(0)
    return GroupedDataset(name="synthetic", ids=np.array([f"s{i:07d}" for i in range(n)]),
                          x=rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
                          y=rng.integers(0, 10, n).astype(np.int64), group=rng.choice(["a", "b"], n),
                          split=np.full(n, "test"), preprocess=Preprocess(scale=1 / 255), num_classes=10)


if __name__ == "__main__":
    raise SystemExit(main())
