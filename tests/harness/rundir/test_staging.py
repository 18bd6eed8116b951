"""harness/rundir/staging.py through RunWriter: a sharded job's finished shards kept until the job is stored."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ResultsError
from harness.metrics.score import score_job
from harness.records import Logits
from harness.records.device import ExecutionPlan, JobTransfer, Timings
from harness.rundir import RunWriter, layout, read_run
from support import run_kit

JOB = ("int8", "pool", "xnnpack")


def _writer(run_dir):
    writer = RunWriter(run_dir, resume=True)
    writer.write_manifest(run_kit.MANIFEST)
    return writer


def _shard_run(z, **extra):
    return run_kit.device_run(JOB, z, timings=Timings(invoke_s=0.5, per_batch_s=(0.25, 0.25)),
                              transfer=JobTransfer(bytes_pushed=10, pushed={"inputs": 10}),
                              execution_plan=ExecutionPlan(available=True, source="interpreter", nodes=3),
                              raw=(z * 10).astype(np.int8), **extra)


def test_a_staged_shard_reads_back_as_it_was_written(tmp_path):
    writer = _writer(tmp_path / "run")
    z = np.arange(12, dtype=np.float32).reshape(3, 4)
    record = {"index": 1, "sha256": "ab" * 32, "n": 3, "device": "m1"}
    writer.add_shard(JOB, record, _shard_run(z), {"device": {"name": "m1"}, "attempts": []})
    assert writer.staged_shards(("int8", "pool", "reference")) == {}
    staged = writer.staged_shards(JOB)[1]
    assert staged.record == record and staged.extra == {"device": {"name": "m1"}, "attempts": []}
    assert np.array_equal(staged.run.logits, z) and np.array_equal(staged.run.raw, (z * 10).astype(np.int8))
    assert staged.run.timings == Timings(invoke_s=0.5, per_batch_s=(0.25, 0.25))
    assert staged.run.transfer.pushed == {"inputs": 10} and staged.run.execution_plan.nodes == 3
    assert (staged.run.variant, staged.run.target, staged.run.delegate) == JOB
    names = [p.name for p in (tmp_path / "run" / layout.STAGING_DIR).iterdir()]
    assert names == [f"{layout.job_key(JOB)}-000001-{'ab' * 8}.npz"]


def test_a_cut_short_staged_file_is_skipped_so_its_shard_runs_again(tmp_path):
    writer = _writer(tmp_path / "run")
    writer.add_shard(JOB, {"index": 0, "sha256": "cd" * 32, "n": 3, "device": "d"},
                     _shard_run(np.zeros((3, 4), np.float32)), {})
    path = next((tmp_path / "run" / layout.STAGING_DIR).iterdir())
    path.write_bytes(path.read_bytes()[:40])
    assert writer.staged_shards(JOB) == {}


def test_storing_the_job_removes_its_staged_shards_and_a_resume_removes_those_of_finished_jobs(tmp_path):
    test = run_kit.dataset()
    ref = Logits(ids=test.ids, values=run_kit.logits(test, 1))
    run_dir = tmp_path / "run"
    writer = _writer(run_dir)
    writer.add_reference(ref, test)
    other = ("fp32", "pool", "xnnpack")
    for job in (JOB, other):
        writer.add_shard(job, {"index": 0, "sha256": "ef" * 32, "n": 30, "device": "d"},
                         _shard_run(np.zeros((30, 4), np.float32)), {})
    run = run_kit.device_run(JOB, run_kit.logits(test, 2))
    shards = [{"index": 0, "sha256": "ef" * 32, "n": 30, "device": "d"},
              {"index": 1, "sha256": "12" * 32, "n": 30, "device": "d"}]
    writer.add_run(run, score_job(run, ref, test), shards=shards)
    assert writer.staged_shards(JOB) == {} and set(writer.staged_shards(other)) == {0}
    entry = next(r for r in read_run(run_dir).summary["runs"] if r["variant"] == "int8")
    assert entry["shards"] == shards
    with pytest.raises(ResultsError, match="already finished"):
        writer.add_shard(JOB, shards[0], _shard_run(np.zeros((30, 4), np.float32)), {})

    # a job stored but killed before its staged shards went; a temporary file of a killed write
    staging = run_dir / layout.STAGING_DIR
    (staging / f"{layout.job_key(JOB)}-000000-{'ef' * 8}.npz").write_bytes(b"left over")
    (staging / ".x.npz.123.tmp").write_bytes(b"half")
    writer.close()
    again = _writer(run_dir)
    assert sorted(p.name.split("-")[0] for p in staging.iterdir()) == [layout.job_key(other)]
    assert set(again.staged_shards(other)) == {0}
    again.close()


def test_a_staged_shard_keeps_its_model_file_and_counts_only_under_its_config_hash(tmp_path):
    """manifest.json deleted and another experiment written into the folder: the summary parts'
    config hash refuses it when a job finished; a shard staged before any job finished must not be
    joined to that experiment's shards either."""
    run_dir = tmp_path / "run"
    writer = _writer(run_dir)
    record = {"index": 0, "sha256": "ab" * 32, "n": 3, "device": "d"}
    writer.add_shard(JOB, record, _shard_run(np.zeros((3, 4), np.float32)), {}, artifact_sha256="f" * 64)
    assert writer.staged_shards(JOB)[0].artifact_sha256 == "f" * 64
    writer.close()
    (run_dir / layout.MANIFEST_FILE).unlink()
    other = RunWriter(run_dir, resume=True)
    other.write_manifest({**run_kit.MANIFEST, "config": {"experiment": {"name": "another"}}})
    assert other.staged_shards(JOB) == {}
    other.close()
    (run_dir / layout.MANIFEST_FILE).unlink()
    same = _writer(run_dir)  # the experiment that staged it, back again: the shard counts
    assert set(same.staged_shards(JOB)) == {0}
    same.close()


def test_a_staged_file_whose_facts_do_not_read_is_skipped_not_fatal(tmp_path):
    """A whole, valid .npz whose meta lacks a fact (written by another qskew version, or edited), or
    whose logits are not one row per sample of the shard: the shard runs again; the resume does not
    stop on a KeyError, nor join rows of the wrong length."""
    import json

    writer = _writer(tmp_path / "run")
    writer.add_shard(JOB, {"index": 0, "sha256": "cd" * 32, "n": 3, "device": "d"},
                     _shard_run(np.zeros((3, 4), np.float32)), {})
    path = next((tmp_path / "run" / layout.STAGING_DIR).iterdir())
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    for broken in ({k: v for k, v in meta.items() if k != "run"},
                   {**meta, "run": {k: v for k, v in meta["run"].items() if k != "batch_size"}},
                   {**meta, "record": {"sha256": "cd" * 32}},
                   {**meta, "record": {**meta["record"], "n": 5}}):  # 3 rows of logits for 5 samples
        with open(path, "wb") as f:
            np.savez(f, **{**arrays, "meta": np.array(json.dumps(broken))})
        assert writer.staged_shards(JOB) == {}
