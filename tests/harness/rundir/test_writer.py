"""The run-directory writer: round trip, one immutable part per job, failures, crashes (no TensorFlow)."""

from __future__ import annotations

import enum
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import rundir
from harness.errors import ResultsError
from harness.metrics.compare import per_sample
from harness.metrics.groups import DISPARITY_COLUMNS, METRIC_COLUMNS, group_metrics
from harness.records import DeviceRun, ExecutionPlan, GroupedDataset, JobTransfer, Logits, RepeatNoise, Timings
from harness.rundir import layout
from support.run_kit import JOBS, MANIFEST, N_CLASSES, N_SAMPLES, add_run, dataset, device_run, logits


def _parts(run_dir, kind):
    return sorted(p.name for p in (run_dir / kind).iterdir())


def _part(run_dir, kind, job):
    key = layout.job_key(job)
    [path] = [p for p in (run_dir / kind).iterdir() if layout.parse_part(p) and layout.parse_part(p)[1] == key]
    return path


def test_round_trip_metrics_are_reproducible_from_predictions(written):
    run_dir, _, test, _ = written
    run = rundir.read_run(run_dir)
    pred = run.predictions
    ref_rows = pred[pred["variant"] == "reference"]
    recomputed = []
    for job in run.jobs():
        rows = pred[(pred["variant"] == job[0]) & (pred["target"] == job[1]) & (pred["delegate"] == job[2])]
        joined = rows.merge(ref_rows[["id", "logits"]], on="id", suffixes=("", "_ref"), validate="one_to_one")
        ds = GroupedDataset(name="x", ids=joined["id"].to_numpy(str), x=np.zeros((len(joined), 0), np.uint8),
                            y=joined["label"].to_numpy(np.int64), group=joined["group"].to_numpy(str),
                            split=np.full(len(joined), "test"), num_classes=N_CLASSES)
        ref = Logits(ds.ids, np.stack(joined["logits_ref"].to_list()))
        recomputed.append(per_sample(ref, device_run(job, np.stack(joined["logits"].to_list())), ds))
    expected = group_metrics(pd.concat(recomputed, ignore_index=True))
    steps = list(layout.STEP_COLUMNS)  # two jobs' logits: checked in test_reader and test_steps
    pd.testing.assert_frame_equal(run.metrics.drop(columns=steps), expected.drop(columns=steps),
                                  check_exact=False, rtol=1e-12, atol=1e-15)
    assert set(run.jobs()) == set(JOBS)
    # the reader's own recomputation agrees too
    pd.testing.assert_frame_equal(run.per_sample(*JOBS[0]), recomputed[0], check_exact=False, rtol=1e-12)


def test_predictions_parts_layout(written):
    run_dir, _, test, ref = written
    for path in (run_dir / "predictions").iterdir():
        schema = pq.read_schema(path)
        assert schema.names == ["id", "group", "label", "variant", "target", "delegate", "pred", "logits"]
        assert schema.field("logits").type == pa.list_(pa.float32())
        assert schema.field("label").type == pa.int64() and schema.field("pred").type == pa.int64()
        assert schema.metadata[b"qskew_schema_version"] == str(rundir.SCHEMA_VERSION).encode()
    assert len(_parts(run_dir, "predictions")) == 1 + len(JOBS)  # the reference and the finished jobs
    run = rundir.read_run(run_dir)
    assert len(run.predictions) == len(test) * (1 + len(JOBS))
    assert run.predictions["variant"].iloc[0] == "reference"
    stored = run.logits(*rundir.REFERENCE_JOB)
    assert stored.ids.tolist() == test.ids.tolist()  # stored in test order, joined on ids
    lookup = dict(zip(ref.ids.tolist(), ref.values))
    np.testing.assert_array_equal(stored.values, np.stack([lookup[i] for i in test.ids]))
    ref_rows = run.predictions[run.predictions["variant"] == "reference"]
    assert ref_rows["pred"].tolist() == stored.values.argmax(axis=1).tolist()
    assert ref_rows[["target", "delegate"]].drop_duplicates().values.tolist() == [["host", "keras"]]


def test_metrics_parts_have_the_stored_columns_and_an_empty_group_on_overall_rows(written):
    run_dir = written[0]
    header = _part(run_dir, "metrics", JOBS[0]).read_text().splitlines()[0]
    assert header.split(",") == [c for c in METRIC_COLUMNS if c not in layout.CROSS_JOB_COLUMNS]
    metrics = rundir.read_run(run_dir).metrics
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    overall = metrics[metrics["scope"] == "overall"]
    assert overall["group"].tolist() == ["", ""] and overall["psi"].isna().all()
    assert not metrics[metrics["scope"] == "group"]["psi"].isna().any()


def test_summary_lists_ok_and_failed_jobs_with_the_same_keys(written):
    run_dir = written[0]
    parts = [json.loads(p.read_text(), parse_constant=_no_nan) for p in sorted((run_dir / "summary").iterdir())]
    assert {p["schema_version"] for p in parts} == {rundir.SCHEMA_VERSION}
    summary = rundir.read_run(run_dir).summary
    assert summary["runs"] == [p["run"] for p in parts]  # in the order the jobs finished
    runs = {(r["variant"], r["target"], r["delegate"]): r for r in summary["runs"]}
    assert len({tuple(r) for r in summary["runs"]}) == 1  # every entry has the same keys, in order
    ok = runs[JOBS[0]]
    assert ok["status"] == "ok" and ok["error"] is None and ok["stage"] is None
    assert ok["runtime"] == "ai_edge_litert" and ok["batch_size"] == 16
    assert ok["latency_ms_per_sample"] == 0.25
    assert runs[JOBS[1]]["latency_ms_per_sample"] == pytest.approx(1000 * 0.009 / N_SAMPLES)
    assert ok["timings"]["per_batch_s"] == [0.003, 0.003, 0.003]
    assert set(DISPARITY_COLUMNS) <= set(ok)
    metrics = rundir.read_run(run_dir).metrics
    int8 = metrics[(metrics["variant"] == "int8") & (metrics["scope"] == "group")]
    assert ok["worst_group"] == int8.loc[int8["acc_drop"].idxmax(), "group"]
    failed = runs[("int16x8", "local", "xnnpack")]
    assert (failed["status"], failed["stage"], failed["error"]) == ("failed", "convert", "converter said no")
    assert failed["acc"] is None and failed["worst_group"] is None
    assert "int16x8" not in set(metrics["variant"])
    assert "int16x8" not in set(rundir.read_run(run_dir).predictions["variant"])


def test_a_failed_device_run_is_recorded_as_a_failure(tmp_path):
    test = dataset(10)
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    broken = DeviceRun("int8", "local", "xnnpack", None, logits=None, error="delegate failed to prepare")
    writer.add_run(broken, None)
    entry = rundir.read_run(tmp_path / "run").summary["runs"][0]
    assert (entry["status"], entry["stage"], entry["error"]) == ("failed", "run", "delegate failed to prepare")
    assert writer.completed_jobs() == set()
    assert len(test) == 10


def test_the_job_records_are_stored_as_the_runners_reported_them(tmp_path):
    """timings, transfer and repeat hold the same keys and values the untyped dicts held."""
    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    timings = {"invoke_s": 0.0112, "load_s": 0.0031, "per_batch_s": [0.0031, 0.0029], "prepare_s": 0.0004,
               "total_s": 0.015, "host_push_s": 0.02, "host_run_s": 0.31, "host_pull_s": 0.004,
               "latency_ms_per_sample": 0.5}
    transfer = {"bytes_pushed": 20, "bytes_pulled": 7, "push_s": 0.1, "run_s": 0.2, "pull_s": 0.3,
                "pushed": {"runner": 0, "inputs": 12, "model": 0, "job": 8}}
    noise = {"runs": 3, "failed": [], "identical": False, "max_abs_logit_diff": 0.25, "flip_rate_max": 0.1,
             "latency_ms_per_sample": [0.5, 0.6, 0.4], "latency_ms_median": 0.5, "latency_ms_min": 0.4,
             "latency_ms_max": 0.6, "latency_rel_spread": 0.4}
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    add_run(writer, device_run(("int8", "local", "xnnpack"), logits(test, 2), timings=Timings.from_json(timings),
                               transfer=JobTransfer.from_json(transfer), repeats=RepeatNoise.from_json(noise)),
            ref, test)
    writer.add_run(DeviceRun("int8", "local", "gpu", "a", None, timings=Timings.from_json(timings),
                             transfer=JobTransfer.from_json(transfer), error="delegate: no GPU"), None)
    ok, failed = rundir.read_run(tmp_path / "run").summary["runs"]
    assert (ok["timings"], ok["transfer"], ok["repeat"]) == (timings, transfer, noise)
    assert ok["latency_ms_per_sample"] == 0.5
    assert (failed["timings"], failed["transfer"], failed["repeat"]) == ({}, {}, None)  # as before: nothing kept


class Stage(str, enum.Enum):  # the shape of harness.records.FailureStage
    CONVERT = "convert"


def test_a_failure_stage_given_as_an_enum_is_stored_as_its_value(tmp_path):
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_failure("int8", "local", "xnnpack", "no", stage=Stage.CONVERT)
    assert rundir.read_run(tmp_path / "run").summary["runs"][0]["stage"] == "convert"


def test_a_score_of_another_job_is_refused(tmp_path):
    from harness.metrics.score import score_job

    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    writer = rundir.RunWriter(tmp_path / "run")
    score = score_job(device_run(JOBS[1], logits(test, 2)), ref, test)
    with pytest.raises(ResultsError, match="int8/local/xnnpack"):
        writer.add_run(device_run(JOBS[0], logits(test, 2)), score)


def test_files_on_disk_follow_every_add(tmp_path):
    run_dir = tmp_path / "run"
    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    writer = rundir.RunWriter(run_dir)
    writer.write_manifest(MANIFEST)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(rundir.FILES + (rundir.LOCK_FILE,))
    assert len(rundir.read_run(run_dir).predictions) == 0
    writer.add_reference(ref, test)
    assert len(rundir.read_run(run_dir).predictions) == 12
    add_run(writer, device_run(JOBS[0], logits(test, 2)), ref, test)
    run = rundir.read_run(run_dir)
    assert len(run.predictions) == 24 and set(run.metrics["variant"]) == {"int8"}
    assert run.jobs() == [JOBS[0]]
    writer.add_failure(*JOBS[1], error="boom", stage="run")
    assert rundir.read_run(run_dir).jobs("failed") == [JOBS[1]]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(rundir.FILES + (rundir.LOCK_FILE,))
    names = [n for kind in layout.PART_DIRS for n in _parts(run_dir, kind)]
    assert all(not n.startswith(".") for n in names)  # no temp files left


def test_earlier_jobs_parts_are_never_rewritten(written):
    run_dir, writer, test, ref = written
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
              for kind in layout.PART_DIRS for p in (run_dir / kind).iterdir()}
    add_run(writer, device_run(("int8", "phone", "gpu"), logits(test, 7)), ref, test)
    writer.add_failure("dynamic", "phone", "gpu", "no", stage="run")
    for path, (inode, mtime, data) in before.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()) == (inode, mtime, data)
    assert len(rundir.read_run(run_dir).summary["runs"]) == 5


def test_rerunning_a_failed_job_replaces_its_parts(written):
    run_dir, writer, test, ref = written
    failed = ("int16x8", "local", "xnnpack")
    add_run(writer, device_run(failed, logits(test, 8)), ref, test)
    key = layout.job_key(failed)
    for kind in ("predictions", "metrics", "summary"):
        assert [layout.parse_part(p)[0] for p in (run_dir / kind).iterdir() if layout.parse_part(p)[1] == key] == [4]
    run = rundir.read_run(run_dir)
    assert run.jobs() == JOBS + [failed] and run.jobs("failed") == []  # it finished last
    before = rundir.read_run(run_dir).predictions
    for again in (lambda: writer.add_failure(*failed, error="flaky", stage="run"),
                  lambda: add_run(writer, device_run(failed, logits(test, 9)), ref, test)):
        with pytest.raises(ResultsError, match="int16x8/local/xnnpack already finished .* never replaced"):
            again()  # a finished job's rows are never replaced, by a failure or another run
    run = rundir.read_run(run_dir)
    assert failed in run.jobs() and run.predictions.equals(before)


def test_part_names_are_safe_for_hostile_names(tmp_path):
    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    hostile = ("int8", "../phone 1", "external:/opt/x,y.so,key=v/../..")
    add_run(writer, device_run(hostile, logits(test, 2)), ref, test)
    paths = [p for kind in layout.PART_DIRS for p in (tmp_path / "run" / kind).iterdir()]
    assert len(paths) == 4 and all(layout.parse_part(p) for p in paths)  # reference + 3 parts, all in place
    assert rundir.read_run(tmp_path / "run").jobs() == [hostile]


def test_a_crash_while_writing_leaves_no_part_and_no_finished_job(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    writer = rundir.RunWriter(run_dir)
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    before = {kind: _parts(run_dir, kind) for kind in layout.PART_DIRS}

    real_write = pq.ParquetWriter.write_table

    def half_write(self, table, *args, **kwargs):  # a row group written, then the disk is full
        real_write(self, table.slice(0, 1), *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", half_write)
    with pytest.raises(ResultsError, match="predictions"):
        add_run(writer, device_run(JOBS[0], logits(test, 2)), ref, test)
    assert {kind: _parts(run_dir, kind) for kind in layout.PART_DIRS} == before
    assert rundir.read_run(run_dir).jobs() == []  # no summary part: the job did not finish


def test_atomic_write_helper_leaves_no_temp_file_on_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def failing(path):
        path.write_text("new but partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        rundir.atomic_write(target, failing)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


# -- drop attribution (quantization part + delegate part) and op placement -----------------------

def test_drop_attribution_adds_up_and_uses_the_reference_kernel_job(tmp_path):
    test = dataset()
    z_ref = logits(test, 1)
    ref = Logits(test.ids, z_ref)
    noisy = {seed: z_ref + np.random.default_rng(seed).normal(scale=0.9, size=z_ref.shape).astype(np.float32)
             for seed in (5, 6, 7)}
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    add_run(writer, device_run(("int8", "phone", "xnnpack"), noisy[5]), ref, test)
    before = rundir.read_run(tmp_path / "run").metrics
    assert before["drop_quantization"].isna().all()  # no reference-kernel job yet: unknown
    add_run(writer, device_run(("int8", "phone", "reference"), noisy[6]), ref, test)
    add_run(writer, device_run(("int8", "board", "builtin"), noisy[7]), ref, test)  # board: no reference job
    m = rundir.read_run(tmp_path / "run").metrics
    base = m[m.delegate == "reference"].set_index(["scope", "group"])
    for _, row in m.iterrows():
        b = base.loc[(row.scope, row.group)]
        assert row.drop_quantization == pytest.approx(row.acc_ref - b.acc, abs=1e-12)
        assert row.drop_quantization + row.drop_delegate == pytest.approx(row.acc_drop, abs=1e-12)
    on_ref = m[m.delegate == "reference"]
    assert (on_ref.drop_delegate.abs() < 1e-12).all()
    xnn = m[(m.delegate == "xnnpack") & (m.scope == "overall")].iloc[0]
    acc_xnn = per_sample(ref, device_run(("int8", "phone", "xnnpack"), noisy[5]), test)["correct"].mean()
    acc_base = per_sample(ref, device_run(("int8", "phone", "reference"), noisy[6]), test)["correct"].mean()
    assert xnn.drop_delegate == pytest.approx(acc_base - acc_xnn, abs=1e-12)


def test_placement_is_written_per_job_from_the_execution_plan(tmp_path):
    test = dataset(12)
    ref = Logits(test.ids, logits(test, 1))
    plan = {"available": True, "source": "interpreter", "placement": [
        {"node": 0, "op": "CONV_2D", "on": "delegate"}, {"node": 1, "op": "SHAPE", "on": "cpu"}]}
    logged = {"available": True, "source": "benchmark_model log", "delegate_partitions": 2,
              "fully_delegated": False, "log_lines": ["partially executed by the delegate w/ 2 delegate kernels"]}
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    for target, seed, reported in (("local", 2, plan), ("phone", 3, logged)):
        run = device_run(("int8", target, "xnnpack"), logits(test, seed),
                         execution_plan=ExecutionPlan.from_json(reported))
        add_run(writer, run, ref, test)
    p = rundir.read_run(tmp_path / "run").placement
    local = p[p.target == "local"]
    assert list(zip(local.node, local.op, local.on)) == [(0, "CONV_2D", "delegate"), (1, "SHAPE", "cpu")]
    phone = p[p.target == "phone"].iloc[0]
    assert (phone.source, phone.on, phone["count"]) == ("benchmark_model log", "partial", 2)
    resumed = rundir.RunWriter(tmp_path / "run", resume=True)
    resumed.add_reference(ref, test)
    assert set(rundir.read_run(tmp_path / "run").placement.target) == {"local", "phone"}


def _no_nan(token):
    raise AssertionError(f"a summary part holds {token}, which is not JSON")


def test_summary_parts_are_byte_for_byte_what_the_dict_building_writer_stored(tmp_path):
    """The typed SummaryEntry stores exactly the JSON that run_entry's dicts did (key order included):
    data/summaries holds the parts commit 7fba36b wrote for the same runs (support.summary_runs)."""
    from pathlib import Path

    from support.summary_runs import RUNS, summary_files, write_summary_runs

    expected_root = Path(__file__).parent / "data" / "summaries"
    written = write_summary_runs(tmp_path)
    assert [p.name for p in written] == list(RUNS)
    for run_dir in written:
        # written at schema 3; the summary parts of schema 4 differ only in that number
        expected = {p.name: p.read_bytes().replace(b'"schema_version": 3,', f'"schema_version": {layout.SCHEMA_VERSION},'.encode())
                    for p in sorted((expected_root / run_dir.name).iterdir())}
        assert len(expected) >= 7
        got = summary_files(run_dir)
        assert list(got) == list(expected), run_dir.name
        for name in expected:
            assert got[name] == expected[name], f"{run_dir.name}/{name}"


def test_a_large_job_is_written_in_row_groups_that_read_back_as_one_table(tmp_path, monkeypatch):
    from harness.rundir import writer as writer_module

    test = dataset(50)
    ref = Logits(test.ids, logits(test, 1))
    run = device_run(JOBS[0], logits(test, 2))
    parts = {}
    for rows in (1000, 16):  # one row group (the default for a small job), then four
        monkeypatch.setattr(writer_module, "PREDICTION_ROWS", rows)
        w = rundir.RunWriter(tmp_path / f"run-{rows}")
        w.write_manifest(MANIFEST)
        w.add_reference(ref, test)
        add_run(w, run, ref, test)
        parts[rows] = {kind: _part(tmp_path / f"run-{rows}", layout.PREDICTIONS_DIR, job)
                       for kind, job in (("ref", layout.REFERENCE_JOB), ("job", JOBS[0]))}
    for kind in ("ref", "job"):
        one, many = (pq.ParquetFile(parts[rows][kind]) for rows in (1000, 16))
        assert (one.num_row_groups, many.num_row_groups) == (1, 4)
        assert many.read().equals(one.read()) and one.schema_arrow.metadata == many.schema_arrow.metadata
    whole = writer_module.predictions_table(JOBS[0], test.ids, test.group, test.y, run.logits.argmax(axis=1),
                                            run.logits)
    one_table = tmp_path / "one-table.parquet"
    writer_module.write_parquet(one_table, whole)  # the old way: one table, pq.write_table
    assert one_table.read_bytes() == parts[1000]["job"].read_bytes()  # small jobs: the same bytes as before


def test_a_resumed_run_scores_against_its_stored_reference_not_a_recomputed_one(tmp_path, caplog):
    """A resume keeps the reference rows its jobs were scored against, and hands those back, so a
    reference computed again (another host, another runtime: different last bits) does not score this
    session's jobs differently from the stored predictions (before, add_reference returned nothing and
    evaluate scored new jobs against the recomputed reference)."""
    from harness.evaluate import stored_if_resumed

    test = dataset()
    first = Logits(ids=test.ids, values=logits(test, 1))
    writer = rundir.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    assert writer.add_reference(first, test) is first  # a new run: the reference it was given
    writer.close()
    again = Logits(ids=test.ids, values=logits(test, 1) + np.float32(1e-3))
    resumed = rundir.RunWriter(tmp_path / "run", resume=True)
    stored = resumed.add_reference(again, test)
    np.testing.assert_array_equal(stored.values, first.values)
    assert list(stored.ids) == list(test.ids)
    with caplog.at_level("WARNING"):
        assert stored_if_resumed(stored, again) is stored
    assert "differs from the one stored" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        stored_if_resumed(stored, Logits(ids=test.ids, values=first.values.copy()))
    assert not caplog.text  # the same reference computed again: nothing to say
