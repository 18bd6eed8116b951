"""The benchmark_model runner kind against the Python runner, side by side on one simulated device.

Both runners run the same variant of the demo's small_cnn over the same simulated ADB device
(real ADB protocol, adb-shell client), alternating, ``ROUNDS`` times each after a first run that
pushes everything; it prints the best seconds per job of each, their ratio, the number of binary
invocations, and the bytes each one pushed the first time (the benchmark_model kind pushes the
inputs already converted to the model's dtype, the Python runner the stored uint8 samples).

The benchmark_model side runs qskew's Python STAND-IN for the binary (no real binary runs here),
which starts a Python and imports the runtime once per batch: its ratio says what the stand-in
costs, not what TFLite's binary would on a phone.

    .venv/bin/python benchmarks/runner_kinds.py [--variants int8,fp32] [--batch-size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUNDS = 3  # best of: the machine is shared and noisy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="int8,fp32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()

    import tempfile

    from harness import config, datasets
    from harness.evaluate import build_variants
    from harness.farm.connect import open_target
    from harness.farm.inventory import DeviceSpec
    from harness.farm.runners import run_on_device
    from models.train import train_or_load

    data = datasets.load("digits-groups")
    model = train_or_load("small_cnn", data, seed=0, progress=False).model
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    exp = config.from_dict({"quantize": {"variants": variants}}, source="benchmark")
    _, artifacts = build_variants(exp, model, data.subset("train"), progress=False)
    test = data.subset("test")
    with tempfile.TemporaryDirectory(prefix="qskew-bench-") as tmp:
        os.environ["QSKEW_CACHE_DIR"] = tmp  # a fresh simulated device: first pushes are counted
        specs = {"python": DeviceSpec("bench-sim", "simulated", python=sys.executable, workdir="py"),
                 "benchmark_model": DeviceSpec("bench-sim", "simulated", python=sys.executable, workdir="bm",
                                               runner="benchmark_model", benchmark_model="standin")}
        print(f"{len(test)} test samples, batch {args.batch_size}, xnnpack, simulated ADB device")
        print(f"{'variant':8} {'python s/job':>12} {'bm s/job':>9} {'ratio':>6} {'calls':>6} "
              f"{'py pushed':>10} {'bm pushed':>10}")
        for art in artifacts:
            best, pushed, calls = {}, {}, 0
            targets = {kind: open_target(spec) for kind, spec in specs.items()}
            try:
                for round_ in range(args.rounds + 1):
                    for kind, spec in specs.items():
                        start = time.perf_counter()
                        run = run_on_device(spec, targets[kind], art, test, "xnnpack", batch_size=args.batch_size)
                        took = time.perf_counter() - start
                        if not run.ok:
                            raise SystemExit(f"{kind} {art.variant}: {run.error}")
                        if round_ == 0:
                            pushed[kind] = run.transfer.pushed.get("inputs", 0) if run.transfer else 0
                            calls = (run.timings.invocations or calls) if kind == "benchmark_model" and run.timings else calls
                        else:
                            best[kind] = min(best.get(kind, took), took)
            finally:
                for target in targets.values():
                    target.close()
            print(f"{art.variant:8} {best['python']:12.3f} {best['benchmark_model']:9.3f} "
                  f"{best['benchmark_model'] / best['python']:6.2f} {calls:6d} "
                  f"{pushed['python']:10,d} {pushed['benchmark_model']:10,d}")
    print("ratio = benchmark_model stand-in / python runner, best of each; pushed = input bytes on the "
          "variant's first run (the Python runner's uint8 test set goes over once for every variant; the "
          "benchmark_model kind's batches are in each model's input dtype)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
