"""Peak host memory of a ``qskew run`` against the number of test samples, side by side in one run.

For each size (default 100,000 and 1,000,000 samples) the script writes a synthetic dataset file
(an uncompressed ``.npz``: uint8 samples 32x32x3, labels of 10 classes, 4 groups, sample ids, a
split column with the train rows first, so each split is one block and stays memory-mapped) and a tiny Keras CNN, then runs, **in a child process of its own**, what
``qskew run`` runs: ``datasets.load`` of the file, ``evaluate()`` with the FP32 reference, the jobs
of the variants (default fp32 and int8, XNNPACK) on the local target, scoring and the run directory.
The child imports everything first, fixes glibc's mmap threshold as ``qskew``'s data commands do first
(``harness.records.heap``), reads its resident memory (VmRSS), resets the kernel's peak
(``/proc/self/clear_refs`` 5), runs, and reports its peak (VmHWM) above the level after imports,
in total and per stage (between two lines that ``evaluate`` echoes; a line is printed when its stage
ends, e.g. "reference" after the reference is computed). The device runner of the
local target is a process of its own (the device's memory, not the host's) and is not counted.

It prints one line per size and ``peak ratio N2 / N1: R`` (goal: <= 1.2). The dataset files (3 GB
for 1M samples) live in a temporary folder, removed at the end; the qskew cache is a temporary one
too unless ``QSKEW_CACHE_DIR`` is set.

    .venv/bin/python benchmarks/memory.py [--sizes 100000,1000000] [--variants fp32,int8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = (100_000, 1_000_000)
VARIANTS = ("fp32", "int8")
SHAPE = (32, 32, 3)           # the synthetic samples
NUM_CLASSES = 10
GROUPS = ("a", "b", "c", "d")
TRAIN_ROWS = 1000             # the same train split at every size (calibration reads it: a copy of its
                              # samples); the rest is the test set, the size the goal is about
WRITE_ROWS = 16_384           # samples generated and written per step when the dataset file is made
GOAL = 1.2
ANON_SAMPLE_S = 0.005         # RssAnon sampling period (the kernel keeps no peak of it)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*map(Path, args.child), args.variants.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="qskew-memory-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.setdefault("QSKEW_CACHE_DIR", str(tmp / "cache"))
        model = tmp / "tiny_cnn.keras"
        build_model(model)
        results = {}
        for n in sizes:
            data = tmp / f"synthetic-{n}.npz"
            t0 = time.perf_counter()
            write_dataset(data, n)
            print(f"{n:>9,} samples: dataset file {data.stat().st_size / 1e9:.2f} GB written in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            results[n] = run_child(data, model, tmp / f"run-{n}", args.variants, env)
            data.unlink()
            print(f"{n:>9,} samples: peak {results[n]['peak_mb']:.0f} MB above {results[n]['base_mb']:.0f} MB "
                  f"after imports (anonymous: {results[n]['anon_peak_mb']:.0f} MB; {results[n]['wall_s']:.0f} s); "
                  "by stage: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in results[n]["stages"]), flush=True)
    small, large = min(sizes), max(sizes)
    ratio = results[large]["peak_mb"] / results[small]["peak_mb"]
    anon = results[large]["anon_peak_mb"] / results[small]["anon_peak_mb"]
    print(f"anonymous peak ratio {large:,} / {small:,}: {anon:.2f}")
    print(f"peak ratio {large:,} / {small:,}: {ratio:.2f} (goal <= {GOAL}): {'met' if ratio <= GOAL else 'NOT met'}")
    return 0


def build_model(path: Path) -> None:
    """A tiny CNN with random weights (what it predicts does not matter here), saved as .keras."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(SHAPE), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(NUM_CLASSES)])
    model.save(path)


def write_dataset(path: Path, n: int) -> None:
    """An uncompressed .npz of ``n`` samples, written member by member in steps (never whole)."""
    import numpy as np

    rng = np.random.default_rng(n)
    n_train = TRAIN_ROWS
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _member(zf, "x", np.uint8, (n,) + SHAPE, lambda i, j: rng.integers(0, 256, (j - i,) + SHAPE, np.uint8))
        _member(zf, "y", np.int64, (n,), lambda i, j: rng.integers(0, NUM_CLASSES, j - i))
        _member(zf, "group", np.dtype("<U1"), (n,),
                lambda i, j: np.array(GROUPS)[rng.integers(0, len(GROUPS), j - i)])
        _member(zf, "id", np.dtype("<U11"), (n,),
                lambda i, j: np.char.add("img-", np.char.zfill(np.arange(i, j).astype("<U7"), 7)))
        _member(zf, "split", np.dtype("<U5"), (n,),
                lambda i, j: np.where(np.arange(i, j) < n_train, "train", "test"))


def _member(zf: zipfile.ZipFile, name: str, dtype, shape: tuple, rows) -> None:
    import numpy as np

    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
        np.lib.format.write_array_header_1_0(out, header)
        for i in range(0, shape[0], WRITE_ROWS):
            out.write(np.ascontiguousarray(rows(i, min(shape[0], i + WRITE_ROWS)), dtype=dtype).tobytes())


def run_child(data: Path, model: Path, out: Path, variants: str, env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--variants", variants, "--child", str(data), str(model),
                           str(out)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child for {data.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-5000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": time.perf_counter() - t0}


def child(data: Path, model: Path, out: Path, variants: list[str]) -> int:
    """Import everything, then run the pipeline and print its peak (JSON on the last line)."""
    import keras  # noqa: F401  (imported before the baseline: imports are not the test set's cost)
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import tensorflow  # noqa: F401

    from harness import config, datasets, evaluate as ev, metrics, rundir  # noqa: F401
    from harness.farm import schedule  # noqa: F401
    from harness.metrics import score  # noqa: F401
    from harness.model_source import ModelSource
    from harness.quantize import convert  # noqa: F401
    from harness.records.heap import fix_mmap_threshold

    fix_mmap_threshold()  # as qskew's data commands do first

    base, base_anon = _status_mb("VmRSS"), _status_mb("RssAnon")
    stages, anon = [], AnonPeak()

    def echo(line: str) -> None:
        """Note the peak since the last line (the stage that ``line`` ends), then reset the peak."""
        if stages or line != "start":
            stages.append((line.split(":")[0].strip()[:24], _status_mb("VmHWM") - base))
        Path("/proc/self/clear_refs").write_text("5")  # the kernel's peak (VmHWM) starts again here

    echo("start")
    dataset = datasets.load(data)
    echo("load")
    exp = config.from_dict({"data": {"dataset": str(data)}, "model": {"path": str(model)},
                            "quantize": {"variants": variants, "calibration_size": 256},
                            "run": {"targets": ["local"], "delegates": ["xnnpack"], "batch_size": 256}})
    source = ModelSource(None, {"source": "file", "path": str(model)},
                         load=lambda: keras.models.load_model(model), file=model)
    ev.evaluate(exp, dataset, source, out, progress=False, echo=echo)
    echo("end")
    anon.stop()
    print(json.dumps({"base_mb": base, "peak_mb": max(v for _, v in stages), "stages": stages,
                      "anon_peak_mb": anon.peak_mb - base_anon}))
    return 0


class AnonPeak:
    """The peak of RssAnon (memory of the process's own, not pages of mapped files), sampled by a
    thread every ``ANON_SAMPLE_S``: the part of the RSS the kernel cannot drop under pressure."""

    def __init__(self):
        import threading

        self.peak_mb, self._stop = _status_mb("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(ANON_SAMPLE_S):
            self.peak_mb = max(self.peak_mb, _status_mb("RssAnon"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


if __name__ == "__main__":
    sys.exit(main())
