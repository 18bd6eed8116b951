"""Resuming a run directory: finished jobs, leftovers of unfinished ones, the config hash, schema 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import rundir
from harness.errors import ResultsError
from harness.rundir import layout, resume
from support.run_kit import JOBS, MANIFEST, add_run, device_run, logits

DATA = Path(__file__).parent / "data"


def test_resume_sees_completed_jobs_and_drops_unfinished_parts(written):
    run_dir, _, test, ref = written
    with pytest.raises(ResultsError, match="already holds a run"):
        rundir.RunWriter(run_dir)
    # simulate a crash after float16's predictions/metrics parts were written but before its summary part
    float16 = layout.job_key(JOBS[1])
    [summary_part] = [p for p in (run_dir / "summary").iterdir() if layout.parse_part(p)[1] == float16]
    summary_part.unlink()
    (run_dir / "predictions" / ".000009-x.parquet.abc.tmp").write_bytes(b"killed mid-write")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["created"] = created = "2020-01-01T00:00:00+00:00"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))

    writer = rundir.RunWriter(run_dir, resume=True)
    assert writer.completed_jobs() == {JOBS[0]}
    leftovers = [p.name for kind in layout.PART_DIRS for p in (run_dir / kind).iterdir()
                 if p.name.startswith(".") or layout.parse_part(p)[1] == float16]
    assert leftovers == []  # the unfinished job's parts and the killed write's temp file are gone
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)  # evaluate() re-adds the reference on every resume
    writer.add_failure("int16x8", "local", "xnnpack", "still no", stage="convert")  # replaces the old entry
    run = rundir.read_run(run_dir)
    assert len(run.predictions) == 2 * len(test)
    assert (run.predictions["variant"].iloc[:len(test)] == "reference").all()  # reference rows stay first
    assert set(run.predictions["variant"]) == {"reference", "int8"}
    assert set(run.metrics["variant"]) == {"int8"}
    assert [r["error"] for r in run.summary["runs"] if r["variant"] == "int16x8"] == ["still no"]
    assert run.manifest["created"] == created and run.manifest["updated"] != created


def test_a_job_that_finished_twice_keeps_its_newest_parts(written):
    run_dir, _, test, ref = written
    key = layout.job_key(JOBS[0])
    for kind in ("predictions", "metrics", "summary"):  # a rerun interrupted before it removed these
        [old] = [p for p in (run_dir / kind).iterdir() if layout.parse_part(p)[1] == key]
        shutil.copy(old, old.with_name(layout.part_stem(7, key) + old.suffix))
    newest = rundir.read_run(run_dir)
    assert newest.jobs()[-1] == JOBS[0]  # seq 7: it finished last
    rundir.RunWriter(run_dir, resume=True)
    assert sorted(layout.parse_part(p)[0] for p in (run_dir / "summary").iterdir()
                  if layout.parse_part(p)[1] == key) == [7]
    pd.testing.assert_frame_equal(rundir.read_run(run_dir).metrics, newest.metrics)


def test_resume_refuses_another_experiment(written):
    writer = rundir.RunWriter(written[0], resume=True)
    with pytest.raises(ResultsError, match="another experiment"):
        writer.write_manifest({**MANIFEST, "config": {"experiment": {"name": "other"}}})


def test_deleting_the_manifest_does_not_bypass_the_config_check(written):
    run_dir = written[0]
    written[1].close()
    parts = sorted((run_dir / layout.SUMMARY_DIR).iterdir())
    assert all(json.loads(p.read_text())["run"]["config_hash"] == resume.config_hash(MANIFEST) for p in parts)
    (run_dir / layout.MANIFEST_FILE).unlink()
    writer = rundir.RunWriter(run_dir, resume=True)
    with pytest.raises(ResultsError, match=r"summary/\d+-[0-9a-f]+\.json \(job .*\) was written for another "
                                           r"experiment"):
        writer.write_manifest({**MANIFEST, "model": {"sha256": "n" * 64}})
    writer.write_manifest(MANIFEST)  # the same experiment resumes


def test_resuming_never_replaces_the_reference_rows(written):
    run_dir, writer, test, ref = written
    writer.close()
    before = rundir.read_run(run_dir).test_set()
    z = rundir.read_run(run_dir).logits(*layout.REFERENCE_JOB).values
    other = type(ref)(ids=test.ids, values=logits(test, 99))
    resumed = rundir.RunWriter(run_dir, resume=True)
    resumed.write_manifest(MANIFEST)
    resumed.add_reference(other, test)
    after = rundir.read_run(run_dir)
    pd.testing.assert_frame_equal(after.test_set(), before)
    assert (after.logits(*layout.REFERENCE_JOB).values == z).all()


def test_resume_into_a_new_folder_starts_empty(tmp_path):
    writer = rundir.RunWriter(tmp_path / "fresh", resume=True)
    assert writer.completed_jobs() == set()


def test_resuming_with_other_devices_keeps_every_device_in_the_manifest(tmp_path):
    base = {"config": {"run": {"targets": ["a"], "devices_file": "", "delegates": ["xnnpack"]}},
            "dataset": {"sha256": "d"}, "model": {"sha256": "m"}, "targets": {"a": {"abi": "arm64"}}}
    rundir.RunWriter(tmp_path / "run", resume=True).write_manifest(base)
    later = {**base, "config": {"run": {"targets": ["b"], "devices_file": "x.toml", "delegates": ["xnnpack"]}},
             "targets": {"b": {"abi": "x86_64"}}}
    writer = rundir.RunWriter(tmp_path / "run", resume=True)
    writer.write_manifest(later)  # another device set: same experiment, resumable
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["targets"] == {"a": {"abi": "arm64"}, "b": {"abi": "x86_64"}}
    changed = {**later, "config": {"run": {"targets": ["b"], "delegates": ["reference"]}}}
    with pytest.raises(ResultsError, match="written for another experiment"):
        rundir.RunWriter(tmp_path / "run", resume=True).write_manifest(changed)


def test_a_run_written_before_fixed_batch_and_repeat_existed_can_be_resumed():
    old = {"config": {"quantize": {"variants": ["int8"]}, "run": {"delegates": ["xnnpack"]}},
           "dataset": {"sha256": "d"}, "model": {"sha256": "m"}}
    new = {**old, "config": {"quantize": {"variants": ["int8"], "fixed_batch": 0},
                             "run": {"delegates": ["xnnpack"], "repeat": 1, "targets": ["phone"]}}}
    assert resume.config_hash(new) == resume.config_hash(old)
    fixed = {**old, "config": {**new["config"], "quantize": {"variants": ["int8"], "fixed_batch": 1}}}
    assert resume.config_hash(fixed) != resume.config_hash(old)  # another model: another run


def test_the_shard_size_is_not_part_of_the_config_hash_so_a_run_before_shards_resumes():
    old = {"config": {"run": {"delegates": ["xnnpack"]}}, "dataset": {"sha256": "d"}, "model": {"sha256": "m"}}
    for shard_samples in (4096, 100):
        new = {**old, "config": {"run": {"delegates": ["xnnpack"], "shard_samples": shard_samples}}}
        assert resume.config_hash(new) == resume.config_hash(old)


# -- schema 1: resuming converts it once ---------------------------------------------------------

def test_resuming_a_schema1_run_converts_it_once_keeping_every_frame(tmp_path):
    before = rundir.read_run(DATA / "schema1")
    run_dir = Path(shutil.copytree(DATA / "schema1", tmp_path / "old"))
    writer = rundir.RunWriter(run_dir, resume=True)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(rundir.FILES + (rundir.LOCK_FILE,))  # schema-1 files are gone
    assert writer.completed_jobs() == set(before.jobs())
    after = rundir.read_run(run_dir)
    assert after.manifest["schema_version"] == rundir.SCHEMA_VERSION
    for name in ("predictions", "metrics", "placement"):
        pd.testing.assert_frame_equal(getattr(after, name), getattr(before, name), check_exact=True)
    assert after.summary["runs"] == before.summary["runs"]  # finishing order kept
    test_ids = before.test_set()
    assert len(test_ids) == 36


def test_a_conversion_interrupted_before_the_manifest_starts_again(tmp_path, monkeypatch):
    run_dir = Path(shutil.copytree(DATA / "schema1", tmp_path / "old"))
    from harness.rundir import writer as writer_module

    real = writer_module.write_json

    def crash_on_manifest(path, obj):
        if path.name == "manifest.json":
            raise ResultsError("killed")
        real(path, obj)

    monkeypatch.setattr(writer_module, "write_json", crash_on_manifest)
    with pytest.raises(ResultsError, match="killed"):
        rundir.RunWriter(run_dir, resume=True)
    assert rundir.read_run(run_dir).manifest["schema_version"] == 1  # still a schema-1 run that reads
    monkeypatch.setattr(writer_module, "write_json", real)
    rundir.RunWriter(run_dir, resume=True)
    pd.testing.assert_frame_equal(rundir.read_run(run_dir).metrics, rundir.read_run(DATA / "schema1").metrics)


def test_a_resumed_schema1_run_grows_by_parts(tmp_path):
    from support.run_kit import dataset
    from harness.records import Logits

    run_dir = Path(shutil.copytree(DATA / "schema1", tmp_path / "old"))
    old = rundir.read_run(run_dir)
    writer = rundir.RunWriter(run_dir, resume=True)
    test = dataset(36)
    ref_rows = old.test_set()
    test = type(test)(name="fixture", ids=ref_rows["id"].to_numpy(str), x=test.x, y=ref_rows["label"].to_numpy(),
                      group=ref_rows["group"].to_numpy(str), split=test.split, num_classes=3)
    ref = old.logits(*rundir.REFERENCE_JOB)
    z = logits(test, 3)[:, :3]
    add_run(writer, device_run(("dynamic", "local", "xnnpack"), z), Logits(ref.ids, ref.values), test)
    run = rundir.read_run(run_dir)
    assert run.jobs()[-1] == ("dynamic", "local", "xnnpack") and run.jobs("failed") == [("int16x8", "phone", "xnnpack")]


def test_a_resume_adds_its_planned_jobs_to_the_earlier_plan(tmp_path):
    plan_a = [["int8", "local", "xnnpack"], ["fp32", "local", "xnnpack"]]
    with rundir.RunWriter(tmp_path / "run") as writer:
        writer.write_manifest({**MANIFEST, "plan": plan_a})
    with rundir.RunWriter(tmp_path / "run", resume=True) as writer:
        writer.write_manifest({**MANIFEST, "plan": [["int8", "phone", "gpu"], ["int8", "local", "xnnpack"]]})
    manifest = json.loads((tmp_path / "run" / layout.MANIFEST_FILE).read_text())
    assert manifest["plan"] == plan_a + [["int8", "phone", "gpu"]]


# -- schema 3: the step columns are computed when reading; a resume rewrites only the manifest ---

def test_a_schema3_run_reads_with_step_columns_and_a_resume_makes_it_schema4(written):
    import numpy as np

    run_dir, writer, test, ref = written
    writer.close()
    for path in [run_dir / "manifest.json", *(run_dir / "summary").iterdir()]:
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "schema_version": 3}))
    before = rundir.read_run(run_dir)
    m = before.metrics
    assert list(m.columns) == list(layout.metrics_columns())
    assert m.loc[m.variant == "int8", "max_step_diff"].isna().all()  # no reference-kernel job of int8 yet
    assert (m.loc[m.variant == "float16", "frac_logits_diff"] == 0.0).all()  # its own baseline
    parts = {p.name: p.read_bytes() for p in (run_dir / "metrics").iterdir()}
    with rundir.RunWriter(run_dir, resume=True) as again:
        again.write_manifest(MANIFEST)
        z = before.logits("int8", "local", "xnnpack")
        order = pd.Index(z.ids).get_indexer(test.ids)
        shifted = z.values[order].copy()
        shifted[0, 0] += np.float32(0.5)  # one logit of one sample moves; float outputs: no steps
        add_run(again, device_run(("int8", "local", "reference"), shifted), ref, test)
    after = rundir.read_run(run_dir)
    assert after.manifest["schema_version"] == rundir.SCHEMA_VERSION == 4
    assert all((run_dir / "metrics" / name).read_bytes() == data for name, data in parts.items())  # untouched
    row = after.metrics.query("variant == 'int8' and delegate == 'xnnpack' and scope == 'overall'").iloc[0]
    assert np.isnan(row.max_step_diff) and row.frac_logits_diff == 1 / z.values.size


def test_where_the_jobs_run_is_not_part_of_the_config_hash():
    """The executor and the Ray address choose where jobs run, not what they measure (both executors
    give identical predictions): a run directory written before they existed, or by the local
    executor, resumes with --executor ray, and a Ray run resumes with the cluster at another
    address (its head host died) or locally."""
    old = {"config": {"run": {"delegates": ["xnnpack"]}}, "dataset": {"sha256": "d"}, "model": {"sha256": "m"}}
    for run in ({"executor": "local", "address": ""}, {"executor": "ray", "address": ""},
                {"executor": "ray", "address": "ray://host2:10001"}):
        new = {**old, "config": {"run": {"delegates": ["xnnpack"], **run}}}
        assert resume.config_hash(new) == resume.config_hash(old)
