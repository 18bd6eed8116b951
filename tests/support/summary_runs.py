"""Run directories whose summary parts cover every shape of a summary entry (``harness.rundir.writer``).

``tests/harness/rundir/data/summaries/`` holds the summary parts these runs got from the writer of
commit 7fba36b, whose ``run_entry`` still built the entry as a dict; ``test_writer.py`` writes the
same runs with today's writer and checks the parts are byte-for-byte the same (key order included).
The runs use only the writer's public API, so this module runs with the old code and the new.
Refresh the fixture only on purpose (a deliberate change of the stored summary)::

    PYTHONPATH=$PWD:$PWD/tests python tests/support/summary_runs.py tests/harness/rundir/data/summaries
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from harness.errors import FailureStage
from harness.metrics.score import score_job
from harness.records import DeviceRun, Logits, Timings
from harness.records.device import AcceleratorReport, ExecutionPlan, JobTransfer, Precision, RepeatNoise
from harness.rundir import RunWriter
from harness.rundir.layout import SUMMARY_DIR
from support.synthetic_runs import _manifest, make_run_dir, make_test_set, variant_logits

RUNS = ("grid", "records")


def write_summary_runs(root: Path) -> list[Path]:
    """Write the runs of :data:`RUNS` under ``root``; returns their directories."""
    root = Path(root)
    grid = make_run_dir(root / "grid", sizes={"majority": 400, "minority": 150, "tiny": 40},
                        targets=("local", "phone"), delegates=("xnnpack", "reference"),
                        failed=[("int8", "phone", "reference")])
    return [grid, _records_run(root / "records")]


def _records_run(path: Path) -> Path:
    """Jobs with every typed record filled in, failures of each kind, and several group attributes."""
    test, z_ref = make_test_set({"F\u00d7A": 300, "F\u00d7B": 60, "M\u00d7A": 250, "M\u00d7B": 120},
                                attributes=("sex", "race"), intersections=True)
    ref = Logits(ids=test.ids.copy(), values=z_ref)
    variants = {"fp32": {}, "int8": {"F\u00d7B": (0.5, 1.2)}, "int16x8": {"M\u00d7B": (0.8, 0.6)}}
    with RunWriter(path) as writer:
        writer.write_manifest(_manifest(test, variants, ("gpu-phone",), None))
        writer.add_reference(ref, test)
        plan = ExecutionPlan(available=True, source="interpreter", nodes=9, delegated_nodes=7,
                             precision=Precision(requested="fp16", reported="fp32"),
                             runtime_report=AcceleratorReport(adapter="Mali-G78", backend="opencl"))
        full = DeviceRun(
            variant="int8", target="gpu-phone", delegate="gpu", artifact_sha256="a" * 64,
            logits=variant_logits(z_ref, test.group, variants["int8"], 3), runtime="ai_edge_litert",
            runtime_version="2.3.0", delegate_applied="gpu", batch_size=32,
            timings=Timings(invocations=23, load_s=0.25, init_s=(0.5, 0.125), per_batch_s=(0.002,) * 23,
                            host_push_s=1.5, latency_ms_per_sample=0.0625),
            transfer=JobTransfer(bytes_pushed=1024, bytes_pulled=2048, push_s=0.5, run_s=2.0, pull_s=0.25,
                                 pushed={"model.tflite": 1024}),
            execution_plan=plan,
            repeats=RepeatNoise(runs=3, failed=("run: timeout",), identical=False, max_abs_logit_diff=0.015625,
                                flip_rate_max=0.001, latency_ms_per_sample=(0.0625, None, 0.07),
                                latency_ms_median=0.0625, latency_ms_min=0.0625, latency_ms_max=0.07,
                                latency_rel_spread=0.12))
        writer.add_run(full, score_job(full, ref, test))
        precision_only = DeviceRun(
            variant="int16x8", target="gpu-phone", delegate="gpu", artifact_sha256="b" * 64,
            logits=variant_logits(z_ref, test.group, variants["int16x8"], 4),
            execution_plan=ExecutionPlan(precision=Precision(requested="fp32", reported="unknown")))
        writer.add_run(precision_only, score_job(precision_only, ref, test))
        for delegate, error in (("nnapi", "delegate: NNAPI refused the model"),
                                ("xnnpack", "outputs: NaN logits in 3 rows"), ("hexagon", "device lost")):
            failed = DeviceRun(variant="int8", target="gpu-phone", delegate=delegate, artifact_sha256="c" * 64,
                               logits=None, error=error, timings=Timings(load_s=0.5),
                               transfer=JobTransfer(bytes_pushed=10))
            writer.add_run(failed, None)
        writer.add_failure("mixed", "gpu-phone", "gpu", "no mixed recipe \u00e9", stage=FailureStage.CONVERT)
        writer.add_failure("fp32", "gpu-phone", "gpu", "first try failed", stage="prepare")
        retried = DeviceRun(variant="fp32", target="gpu-phone", delegate="gpu", artifact_sha256=None,
                            logits=np.asarray(z_ref, dtype=np.float64))
        writer.add_run(retried, score_job(retried, ref, test))  # replaces the failed entry
    return path


def summary_files(run_dir: Path) -> dict[str, bytes]:
    """The summary parts of a run directory: file name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted((Path(run_dir) / SUMMARY_DIR).iterdir())}


def main(out: Path) -> None:
    """Write the runs to a scratch folder and keep only their summary parts under ``out``."""
    scratch = out.with_name(out.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    for run_dir in write_summary_runs(scratch):
        (out / run_dir.name).mkdir(parents=True)
        for name, data in summary_files(run_dir).items():
            (out / run_dir.name / name).write_bytes(data)
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
