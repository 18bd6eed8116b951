"""The run directory: round trip, atomic rewrites, failures, resume and refusals (no TensorFlow)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import results
from harness.report import text as report_text
from harness.errors import ResultsError
from harness.metrics.compare import per_sample
from harness.metrics.groups import DISPARITY_COLUMNS, METRIC_COLUMNS, group_metrics
from harness.records import DeviceRun, GroupedDataset, Logits

N_SAMPLES, N_CLASSES = 60, 4
JOBS = [("int8", "local", "xnnpack"), ("float16", "local", "reference")]
MANIFEST = {"config": {"experiment": {"name": "t"}}, "dataset": {"name": "tiny", "sha256": "d" * 64},
            "model": {"sha256": "m" * 64}}


def _dataset(n: int = N_SAMPLES, seed: int = 0) -> GroupedDataset:
    rng = np.random.default_rng(seed)
    return GroupedDataset(
        name="tiny", ids=np.array([f"id{i:03d}" for i in range(n)]), x=np.zeros((n, 0), np.uint8),
        y=rng.integers(0, N_CLASSES, n).astype(np.int64),
        group=np.array(["north", "south", "east"])[rng.integers(0, 3, n)],
        split=np.full(n, "test"), num_classes=N_CLASSES)


def _logits(test: GroupedDataset, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(test), N_CLASSES)).astype(np.float32)
    z[np.arange(len(test)), test.y] += 1.0  # a model that is right more often than chance
    return z


def _run(job, z, **extra) -> DeviceRun:
    variant, target, delegate = job
    return DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256="a" * 64, logits=z,
                     runtime="ai_edge_litert", runtime_version="2.3.0", delegate_applied=delegate,
                     batch_size=16, **extra)


@pytest.fixture
def written(tmp_path):
    """A run directory with the reference, two finished jobs and one failed job."""
    test = _dataset()
    z_ref = _logits(test, 1)
    order = np.random.default_rng(9).permutation(len(test))
    ref = Logits(ids=test.ids[order], values=z_ref[order])  # reference arrives in another order
    writer = results.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    for seed, job in enumerate(JOBS, start=2):
        z = z_ref + np.random.default_rng(seed).normal(scale=0.6, size=z_ref.shape).astype(np.float32)
        # the runner's timings format; int8's on-device stage also set latency_ms_per_sample
        timings = {"invoke_s": 0.0091, "per_batch_s": [0.003, 0.003, 0.003], "total_s": 0.02}
        if job[0] == "int8":
            timings["latency_ms_per_sample"] = 0.25
        writer.add_run(_run(job, z, timings=timings), ref, test)
    writer.add_failure("int16x8", "local", "xnnpack", "converter said no", stage="convert")
    return tmp_path / "run", writer, test, ref


def test_round_trip_metrics_are_reproducible_from_predictions(written):
    run_dir, _, test, _ = written
    run = results.read_run(run_dir)
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
        recomputed.append(per_sample(ref, _run(job, np.stack(joined["logits"].to_list())), ds))
    expected = group_metrics(pd.concat(recomputed, ignore_index=True))
    pd.testing.assert_frame_equal(run.metrics, expected, check_exact=False, rtol=1e-12, atol=1e-15)
    assert set(run.jobs()) == set(JOBS)
    # the reader's own recomputation agrees too
    pd.testing.assert_frame_equal(run.per_sample(*JOBS[0]), recomputed[0], check_exact=False, rtol=1e-12)


def test_predictions_file_layout(written):
    run_dir, _, test, ref = written
    schema = pq.read_schema(run_dir / "predictions.parquet")
    assert schema.names == ["id", "group", "label", "variant", "target", "delegate", "pred", "logits"]
    assert schema.field("logits").type == pa.list_(pa.float32())
    assert schema.field("label").type == pa.int64() and schema.field("pred").type == pa.int64()
    run = results.read_run(run_dir)
    assert len(run.predictions) == len(test) * (1 + len(JOBS))
    assert run.predictions["variant"].iloc[0] == "reference"
    stored = run.logits(*results.REFERENCE_JOB)
    assert stored.ids.tolist() == test.ids.tolist()  # stored in test order, joined on ids
    lookup = dict(zip(ref.ids.tolist(), ref.values))
    np.testing.assert_array_equal(stored.values, np.stack([lookup[i] for i in test.ids]))
    ref_rows = run.predictions[run.predictions["variant"] == "reference"]
    assert ref_rows["pred"].tolist() == stored.values.argmax(axis=1).tolist()
    assert ref_rows[["target", "delegate"]].drop_duplicates().values.tolist() == [["host", "keras"]]


def test_metrics_csv_has_the_fixed_columns_and_an_empty_group_on_overall_rows(written):
    run_dir = written[0]
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",") == list(METRIC_COLUMNS)
    metrics = results.read_run(run_dir).metrics
    overall = metrics[metrics["scope"] == "overall"]
    assert overall["group"].tolist() == ["", ""] and overall["psi"].isna().all()
    assert not metrics[metrics["scope"] == "group"]["psi"].isna().any()


def test_summary_lists_ok_and_failed_jobs_with_the_same_keys(written):
    run_dir = written[0]
    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=_no_nan)
    assert summary["schema_version"] == results.SCHEMA_VERSION
    runs = {(r["variant"], r["target"], r["delegate"]): r for r in summary["runs"]}
    assert len({tuple(r) for r in summary["runs"]}) == 1  # every entry has the same keys, in order
    ok = runs[JOBS[0]]
    assert ok["status"] == "ok" and ok["error"] is None and ok["stage"] is None
    assert ok["runtime"] == "ai_edge_litert" and ok["batch_size"] == 16
    assert ok["latency_ms_per_sample"] == 0.25
    assert runs[JOBS[1]]["latency_ms_per_sample"] == pytest.approx(1000 * 0.009 / N_SAMPLES)
    assert ok["timings"]["per_batch_s"] == [0.003, 0.003, 0.003]
    assert set(DISPARITY_COLUMNS) <= set(ok)
    metrics = results.read_run(run_dir).metrics
    int8 = metrics[(metrics["variant"] == "int8") & (metrics["scope"] == "group")]
    assert ok["worst_group"] == int8.loc[int8["acc_drop"].idxmax(), "group"]
    failed = runs[("int16x8", "local", "xnnpack")]
    assert (failed["status"], failed["stage"], failed["error"]) == ("failed", "convert", "converter said no")
    assert failed["acc"] is None and failed["worst_group"] is None
    assert "int16x8" not in set(metrics["variant"])
    assert "int16x8" not in set(results.read_run(run_dir).predictions["variant"])


def test_a_failed_device_run_is_recorded_as_a_failure(tmp_path):
    test = _dataset(10)
    z = _logits(test, 1)
    writer = results.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    broken = DeviceRun("int8", "local", "xnnpack", None, logits=None, error="delegate failed to prepare")
    writer.add_run(broken, Logits(test.ids, z), test)
    entry = results.read_run(tmp_path / "run").summary["runs"][0]
    assert (entry["status"], entry["stage"], entry["error"]) == ("failed", "run", "delegate failed to prepare")
    assert writer.completed_jobs() == set()


def test_files_on_disk_follow_every_add(tmp_path):
    run_dir = tmp_path / "run"
    test = _dataset(12)
    ref = Logits(test.ids, _logits(test, 1))
    writer = results.RunWriter(run_dir)
    writer.write_manifest(MANIFEST)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(results.FILES + results.OPTIONAL_FILES)
    assert len(results.read_run(run_dir).predictions) == 0
    writer.add_reference(ref, test)
    assert len(results.read_run(run_dir).predictions) == 12
    writer.add_run(_run(JOBS[0], _logits(test, 2)), ref, test)
    run = results.read_run(run_dir)
    assert len(run.predictions) == 24 and set(run.metrics["variant"]) == {"int8"}
    assert run.jobs() == [JOBS[0]]
    writer.add_failure(*JOBS[1], error="boom", stage="run")
    assert results.read_run(run_dir).jobs("failed") == [JOBS[1]]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(results.FILES + results.OPTIONAL_FILES)  # no temp files left


def test_a_crash_while_writing_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    test = _dataset(12)
    ref = Logits(test.ids, _logits(test, 1))
    writer = results.RunWriter(run_dir)
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    before = (run_dir / "predictions.parquet").read_bytes()

    def half_write(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_write)
    with pytest.raises(ResultsError, match="predictions.parquet"):
        writer.add_run(_run(JOBS[0], _logits(test, 2)), ref, test)
    assert (run_dir / "predictions.parquet").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(results.FILES + results.OPTIONAL_FILES)
    assert results.read_run(run_dir).jobs() == []  # summary was not advanced past the failed write


def test_resume_sees_completed_jobs_and_drops_unfinished_rows(written):
    run_dir, _, test, ref = written
    with pytest.raises(ResultsError, match="already holds a run"):
        results.RunWriter(run_dir)
    # simulate a crash after predictions/metrics were written but before summary.json was
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["runs"] = [r for r in summary["runs"] if r["variant"] != "float16"]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["created"] = created = "2020-01-01T00:00:00+00:00"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))

    writer = results.RunWriter(run_dir, resume=True)
    assert writer.completed_jobs() == {JOBS[0]}
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)  # evaluate() re-adds the reference on every resume
    writer.add_failure("int16x8", "local", "xnnpack", "still no", stage="convert")  # replaces the old entry
    run = results.read_run(run_dir)
    assert len(run.predictions) == 2 * len(test)
    assert (run.predictions["variant"].iloc[:len(test)] == "reference").all()  # reference rows stay first
    assert set(run.predictions["variant"]) == {"reference", "int8"}
    assert set(run.metrics["variant"]) == {"int8"}
    assert [r["error"] for r in run.summary["runs"] if r["variant"] == "int16x8"] == ["still no"]
    assert run.manifest["created"] == created and run.manifest["updated"] != created


def test_resume_refuses_another_experiment(written):
    writer = results.RunWriter(written[0], resume=True)
    with pytest.raises(ResultsError, match="another experiment"):
        writer.write_manifest({**MANIFEST, "config": {"experiment": {"name": "other"}}})


def test_resume_into_a_new_folder_starts_empty(tmp_path):
    writer = results.RunWriter(tmp_path / "fresh", resume=True)
    assert writer.completed_jobs() == set()


@pytest.mark.parametrize("missing", results.FILES)
def test_a_missing_file_is_named(written, missing):
    (written[0] / missing).unlink()
    with pytest.raises(ResultsError, match=missing.replace(".", r"\.")):
        results.read_run(written[0])


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(ResultsError, match="nowhere"):
        results.read_run(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["manifest.json", "summary.json"])
def test_a_newer_schema_is_refused(written, name):
    path = written[0] / name
    data = json.loads(path.read_text())
    data["schema_version"] = results.SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=f"{name}.*newer"):
        results.read_run(written[0])


def test_a_newer_predictions_schema_is_refused(written):
    path = written[0] / "predictions.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"qskew_schema_version": b"99"}), path)
    with pytest.raises(ResultsError, match="predictions.parquet.*newer"):
        results.read_run(written[0])


def test_unreadable_json_is_named(written):
    (written[0] / "summary.json").write_text("{not json")
    with pytest.raises(ResultsError, match="summary.json"):
        results.read_run(written[0])


def test_format_table_fits_100_columns_with_overall_rows_first(written):
    metrics = results.read_run(written[0]).metrics
    text = report_text.format_table(metrics)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    body = [line for line in lines[2:] if line[:1] != " " and "(all)" in line]
    assert [line.split()[0] for line in body] == ["float16", "int8"]
    row = metrics[(metrics["variant"] == "int8") & (metrics["scope"] == "overall")].iloc[0]
    int8_line = next(line for line in lines if line.startswith("int8"))
    assert f"{100 * row['acc_drop']:+.2f}" in int8_line.split()
    first_group_line = lines[lines.index(int8_line) + 1]
    assert first_group_line.split()[0] == "east"
    assert report_text.format_table(metrics.iloc[:0]).startswith("(no metrics")


def test_format_summary_fits_100_columns_and_shows_failures(written):
    text = report_text.format_summary(results.read_run(written[0]).summary)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "FAILED (convert): converter said no" in text


def _no_nan(token):
    raise AssertionError(f"summary.json holds {token}, which is not JSON")


def test_atomic_write_helper_leaves_no_temp_file_on_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")

    def failing(path):
        path.write_text("new but partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        results.atomic_write(target, failing)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


def test_resuming_with_other_devices_keeps_every_device_in_the_manifest(tmp_path):
    from harness import results

    base = {"config": {"run": {"targets": ["a"], "devices_file": "", "delegates": ["xnnpack"]}},
            "dataset": {"sha256": "d"}, "model": {"sha256": "m"}, "targets": {"a": {"abi": "arm64"}}}
    results.RunWriter(tmp_path / "run", resume=True).write_manifest(base)
    later = {**base, "config": {"run": {"targets": ["b"], "devices_file": "x.toml", "delegates": ["xnnpack"]}},
             "targets": {"b": {"abi": "x86_64"}}}
    writer = results.RunWriter(tmp_path / "run", resume=True)
    writer.write_manifest(later)  # another device set: same experiment, resumable
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["targets"] == {"a": {"abi": "arm64"}, "b": {"abi": "x86_64"}}
    changed = {**later, "config": {"run": {"targets": ["b"], "delegates": ["reference"]}}}
    with pytest.raises(results.ResultsError, match="written for another experiment"):
        results.RunWriter(tmp_path / "run", resume=True).write_manifest(changed)


# -- drop attribution (quantization part + delegate part) and op placement -----------------------

def test_drop_attribution_adds_up_and_uses_the_reference_kernel_job(tmp_path):
    test = _dataset()
    z_ref = _logits(test, 1)
    ref = Logits(test.ids, z_ref)
    noisy = {seed: z_ref + np.random.default_rng(seed).normal(scale=0.9, size=z_ref.shape).astype(np.float32)
             for seed in (5, 6, 7)}
    writer = results.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    writer.add_run(_run(("int8", "phone", "xnnpack"), noisy[5]), ref, test)
    before = results.read_run(tmp_path / "run").metrics
    assert before["drop_quantization"].isna().all()  # no reference-kernel job yet: unknown
    writer.add_run(_run(("int8", "phone", "reference"), noisy[6]), ref, test)
    writer.add_run(_run(("int8", "board", "builtin"), noisy[7]), ref, test)  # board: no reference job
    m = results.read_run(tmp_path / "run").metrics
    base = m[m.delegate == "reference"].set_index(["scope", "group"])
    for _, row in m.iterrows():
        b = base.loc[(row.scope, row.group)]
        assert row.drop_quantization == pytest.approx(row.acc_ref - b.acc, abs=1e-12)
        assert row.drop_quantization + row.drop_delegate == pytest.approx(row.acc_drop, abs=1e-12)
    on_ref = m[m.delegate == "reference"]
    assert (on_ref.drop_delegate.abs() < 1e-12).all()
    xnn = m[(m.delegate == "xnnpack") & (m.scope == "overall")].iloc[0]
    acc_xnn = per_sample(ref, _run(("int8", "phone", "xnnpack"), noisy[5]), test)["correct"].mean()
    acc_base = per_sample(ref, _run(("int8", "phone", "reference"), noisy[6]), test)["correct"].mean()
    assert xnn.drop_delegate == pytest.approx(acc_base - acc_xnn, abs=1e-12)


def test_metrics_written_before_the_attribution_columns_still_read(written):
    path = written[0] / results.METRICS_FILE
    old = pd.read_csv(path).drop(columns=list(results.ATTRIBUTION_COLUMNS))
    old.to_csv(path, index=False)
    m = results.read_run(written[0]).metrics
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert not m.loc[m.delegate == "reference", "drop_quantization"].isna().any()


def test_placement_is_written_per_job_from_the_execution_plan(tmp_path):
    test = _dataset(12)
    ref = Logits(test.ids, _logits(test, 1))
    plan = {"available": True, "source": "interpreter", "placement": [
        {"node": 0, "op": "CONV_2D", "on": "delegate"}, {"node": 1, "op": "SHAPE", "on": "cpu"}]}
    logged = {"available": True, "source": "benchmark_model log", "delegate_partitions": 2,
              "fully_delegated": False, "log_lines": ["partially executed by the delegate w/ 2 delegate kernels"]}
    writer = results.RunWriter(tmp_path / "run")
    writer.write_manifest(MANIFEST)
    writer.add_reference(ref, test)
    writer.add_run(_run(("int8", "local", "xnnpack"), _logits(test, 2), execution_plan=plan), ref, test)
    writer.add_run(_run(("int8", "phone", "xnnpack"), _logits(test, 3), execution_plan=logged), ref, test)
    p = results.read_run(tmp_path / "run").placement
    local = p[p.target == "local"]
    assert list(zip(local.node, local.op, local.on)) == [(0, "CONV_2D", "delegate"), (1, "SHAPE", "cpu")]
    phone = p[p.target == "phone"].iloc[0]
    assert (phone.source, phone.on, phone["count"]) == ("benchmark_model log", "partial", 2)
    writer.add_failure("int8", "local", "xnnpack", "gone", stage="run")  # a rerun that failed
    assert set(results.read_run(tmp_path / "run").placement.target) == {"phone"}
    resumed = results.RunWriter(tmp_path / "run", resume=True)
    resumed.add_reference(ref, test)
    assert set(results.read_run(tmp_path / "run").placement.target) == {"phone"}


def test_a_run_without_placement_file_reads_as_none(written):
    (written[0] / results.PLACEMENT_FILE).unlink()
    assert results.read_run(written[0]).placement is None


def test_a_run_written_before_fixed_batch_and_repeat_existed_can_be_resumed():
    old = {"config": {"quantize": {"variants": ["int8"]}, "run": {"delegates": ["xnnpack"]}},
           "dataset": {"sha256": "d"}, "model": {"sha256": "m"}}
    new = {**old, "config": {"quantize": {"variants": ["int8"], "fixed_batch": 0},
                             "run": {"delegates": ["xnnpack"], "repeat": 1, "targets": ["phone"]}}}
    assert results.config_hash(new) == results.config_hash(old)
    fixed = {**old, "config": {**new["config"], "quantize": {"variants": ["int8"], "fixed_batch": 1}}}
    assert results.config_hash(fixed) != results.config_hash(old)  # another model: another run
