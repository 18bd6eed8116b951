"""How ``schema1/`` and ``schema1-expected/`` were made: run ONCE with the code of commit bea5f25,
the last one whose ``harness.results`` wrote schema 1 (the module no longer exists, so this script
no longer runs; it is kept as the record of what the fixture holds).

    PYTHONPATH=$PWD python tests/harness/rundir/data/make_schema1.py

``schema1/`` is the run directory as that code wrote it; ``schema1-expected/`` holds the frames
that code's ``read_run`` returned for it (predictions, metrics, placement and the per_sample frames
of every finished job as parquet; summary and manifest as JSON). ``test_reader.py`` checks that today's reader returns the same frames.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.records import DeviceRun, GroupedDataset, Logits
from harness.results import RunWriter, read_run

HERE = Path(__file__).parent
N, K = 36, 3
HOSTILE = "external:/opt/lib d,x.so,key=v/../\u00e9"  # a delegate spec with every awkward character


def main() -> None:
    rng = np.random.default_rng(12)
    test = GroupedDataset(name="fixture", ids=np.array([f"f{i:03d}" for i in range(N)]), x=np.zeros((N, 0), np.uint8),
                          y=rng.integers(0, K, N).astype(np.int64),
                          group=np.array(["north", "south", "east"])[rng.integers(0, 3, N)],
                          split=np.full(N, "test"), num_classes=K)
    z_ref = rng.normal(size=(N, K)).astype(np.float32)
    z_ref[np.arange(N), test.y] += 1.5
    order = rng.permutation(N)
    ref = Logits(test.ids[order], z_ref[order])
    out = HERE / "schema1"
    shutil.rmtree(out, ignore_errors=True)
    writer = RunWriter(out)
    writer.write_manifest({"config": {"experiment": {"name": "fixture"}, "run": {"targets": ["local", "phone"]}},
                           "dataset": {"name": "fixture", "sha256": "d" * 64}, "model": {"sha256": "m" * 64},
                           "targets": {"local": {"kind": "local"}, "phone": {"kind": "adb"}}})
    writer.add_reference(ref, test)
    plan = {"available": True, "source": "interpreter", "placement": [
        {"node": 0, "op": "CONV_2D", "on": "delegate"}, {"node": 1, "op": "SHAPE", "on": "cpu"}]}
    logged = {"available": True, "source": "benchmark_model log", "delegate_partitions": 2,
              "fully_delegated": False, "log_lines": ["partially executed by the delegate w/ 2 delegate kernels"]}
    jobs = [(("int8", "local", "xnnpack"), plan, {"runs": 2, "failed": 0, "identical": True}),
            (("int8", "local", "reference"), {}, {}),
            (("float16", "phone", "gpu"), logged, {}),
            (("int8", "phone", HOSTILE), {}, {})]
    for seed, (job, execution_plan, repeats) in enumerate(jobs, start=3):
        z = z_ref + np.random.default_rng(seed).normal(scale=0.8, size=z_ref.shape).astype(np.float32)
        writer.add_run(DeviceRun(*job, artifact_sha256="a" * 64, logits=z, runtime="ai_edge_litert",
                                 runtime_version="2.3.0", delegate_applied=job[2], batch_size=8,
                                 timings={"per_batch_s": [0.002] * 5, "total_s": 0.02},
                                 transfer={"bytes_pushed": 10, "pushed": {"model": 10}},
                                 execution_plan=execution_plan, repeats=repeats), ref, test)
    writer.add_failure("int16x8", "phone", "xnnpack", "converter said no", stage="convert")
    writer.add_failure("dynamic", "local", "xnnpack", "delegate failed to prepare", stage="run")
    save_expected(out, HERE / "schema1-expected")


def save_expected(run_dir: Path, dest: Path) -> None:
    run = read_run(run_dir)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    pq.write_table(pa.Table.from_pandas(run.predictions, preserve_index=False), dest / "predictions.parquet")
    pq.write_table(pa.Table.from_pandas(run.metrics, preserve_index=False), dest / "metrics.parquet")
    pq.write_table(pa.Table.from_pandas(run.placement, preserve_index=False), dest / "placement.parquet")
    import pandas as pd

    per_sample = pd.concat([run.per_sample(*job) for job in run.jobs()], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(per_sample, preserve_index=False), dest / "per_sample.parquet")
    (dest / "summary.json").write_text(json.dumps(run.summary, indent=1))
    (dest / "manifest.json").write_text(json.dumps(run.manifest, indent=1))


if __name__ == "__main__":
    main()
