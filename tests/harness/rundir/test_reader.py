"""The run-directory reader: schema-1 directories read as before, refusals name the file (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness import rundir
from harness.errors import ResultsError
from harness.metrics.groups import METRIC_COLUMNS
from harness.report import text as report_text
from harness.rundir import layout

DATA = Path(__file__).parent / "data"


@pytest.fixture
def schema1(tmp_path):
    """A copy of the schema-1 run directory written by the code before schema 2 (data/make_schema1.py)."""
    return Path(shutil.copytree(DATA / "schema1", tmp_path / "old"))


def _expected(path: Path) -> pd.DataFrame:
    """What the old reader read; its metrics gain schema 3's attribute column ("group", "" on overall
    rows) and schema 4's step columns (checked on their own: test_schema1_runs_get_the_step_columns)."""
    table = pd.read_parquet(path)
    if path.stem == "metrics":
        table.insert(table.columns.get_loc("scope") + 1, "attribute",
                     (table["scope"] != "overall").map({True: "group", False: ""}).astype(table["scope"].dtype))
    return table


def _without_steps(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=list(layout.STEP_COLUMNS)) if "max_step_diff" in table else table


def test_a_schema1_run_reads_as_the_old_reader_read_it():
    run = rundir.read_run(DATA / "schema1")
    expected = DATA / "schema1-expected"
    for name in ("predictions", "metrics", "placement"):
        pd.testing.assert_frame_equal(_without_steps(getattr(run, name)), _expected(expected / f"{name}.parquet"),
                                      check_exact=True)
    per_sample = pd.concat([run.per_sample(*job) for job in run.jobs()], ignore_index=True)
    pd.testing.assert_frame_equal(per_sample, pd.read_parquet(expected / "per_sample.parquet"), check_exact=True)
    assert run.summary == json.loads((expected / "summary.json").read_text())
    assert run.manifest == json.loads((expected / "manifest.json").read_text())
    assert run.jobs("failed") == [("int16x8", "phone", "xnnpack"), ("dynamic", "local", "xnnpack")]


@pytest.mark.parametrize("missing", rundir.FILES)
def test_a_missing_file_is_named(written, missing):
    path = written[0] / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(ResultsError, match=missing.replace(".", r"\.")):
        rundir.read_run(written[0])


@pytest.mark.parametrize("missing", layout.SCHEMA1_FILES)
def test_a_missing_schema1_file_is_named(schema1, missing):
    (schema1 / missing).unlink()
    with pytest.raises(ResultsError, match=missing.replace(".", r"\.")):
        rundir.read_run(schema1)


def test_a_missing_part_of_a_finished_job_is_named(written):
    path = next((written[0] / "metrics").iterdir())
    path.unlink()
    with pytest.raises(ResultsError, match=f"{path.name}.*missing"):
        rundir.read_run(written[0])


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(ResultsError, match="nowhere"):
        rundir.read_run(tmp_path / "nowhere")


def _newer(path: Path) -> None:
    data = json.loads(path.read_text())
    data["schema_version"] = rundir.SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))


def test_a_newer_manifest_is_refused_naming_the_file_and_both_versions(written):
    _newer(written[0] / "manifest.json")
    with pytest.raises(ResultsError, match=rf"manifest\.json has schema_version {rundir.SCHEMA_VERSION + 1}, newer than this qskew's {rundir.SCHEMA_VERSION}"):
        rundir.read_run(written[0])


def test_a_newer_summary_part_is_refused(written):
    path = sorted((written[0] / "summary").iterdir())[0]
    _newer(path)
    with pytest.raises(ResultsError, match=f"{path.name} has schema_version {rundir.SCHEMA_VERSION + 1}, newer than this qskew's {rundir.SCHEMA_VERSION}"):
        rundir.read_run(written[0])


def test_a_newer_schema1_summary_is_refused(schema1):
    _newer(schema1 / "summary.json")
    with pytest.raises(ResultsError, match=rf"summary\.json has schema_version {rundir.SCHEMA_VERSION + 1}, newer than this qskew's {rundir.SCHEMA_VERSION}"):
        rundir.read_run(schema1)


def test_a_newer_predictions_part_is_refused(written):
    path = sorted((written[0] / "predictions").iterdir())[-1]
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"qskew_schema_version": b"99"}), path)
    with pytest.raises(ResultsError, match=f"{path.name} has schema_version 99, newer"):
        rundir.read_run(written[0])


def test_a_newer_schema1_predictions_file_is_refused(schema1):
    path = schema1 / "predictions.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata({b"qskew_schema_version": b"99"}), path)
    with pytest.raises(ResultsError, match=r"predictions\.parquet.*newer"):
        rundir.read_run(schema1)


def test_unreadable_json_is_named(written):
    path = sorted((written[0] / "summary").iterdir())[0]
    path.write_text("{not json")
    with pytest.raises(ResultsError, match=path.name):
        rundir.read_run(written[0])


def test_a_summary_part_under_another_jobs_name_is_refused(written):
    first, second = sorted((written[0] / "summary").iterdir())[:2]
    second.write_text(first.read_text())
    with pytest.raises(ResultsError, match=f"{second.name} holds job int8/local/xnnpack, not the job its name"):
        rundir.read_run(written[0])


def test_parts_no_summary_vouches_for_are_not_read(written):
    run_dir = written[0]
    before = rundir.read_run(run_dir)
    stray = run_dir / "predictions" / "000099-0123456789abcdef.parquet"
    stray.write_bytes(next((run_dir / "predictions").iterdir()).read_bytes())
    pd.testing.assert_frame_equal(rundir.read_run(run_dir).predictions, before.predictions)


def test_format_table_fits_100_columns_with_overall_rows_first(written):
    metrics = rundir.read_run(written[0]).metrics
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
    text = report_text.format_summary(rundir.read_run(written[0]).summary)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "FAILED (convert): converter said no" in text


def test_schema1_metrics_written_before_the_attribution_columns_still_read(schema1):
    path = schema1 / "metrics.csv"
    old = pd.read_csv(path).drop(columns=list(layout.ATTRIBUTION_COLUMNS))
    old.to_csv(path, index=False)
    m = rundir.read_run(schema1).metrics
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert not m.loc[m.delegate == "reference", "drop_quantization"].isna().any()
    pd.testing.assert_frame_equal(_without_steps(m), _expected(DATA / "schema1-expected" / "metrics.parquet"),
                                  check_exact=False, rtol=1e-12)


def test_a_schema1_run_without_placement_file_reads_as_none(schema1):
    (schema1 / "placement.csv").unlink()
    assert rundir.read_run(schema1).placement is None


def test_schema1_runs_get_the_step_columns(schema1):
    """Float outputs (the fixture's manifest names no output scale): no steps, and the share of
    logits that differ at all from the same variant's reference-kernel job (local's stands in for
    the phone's), here worked out from the stored logits."""
    run = rundir.read_run(schema1)
    m = run.metrics
    assert m["max_step_diff"].isna().all()
    base = run.logits("int8", "local", "reference")
    for target, delegate in [("local", "xnnpack"), ("local", "reference")] + [
            (t, d) for v, t, d in run.jobs() if v == "int8" and t != "local"]:
        mine = run.logits("int8", target, delegate)
        order = pd.Index(base.ids).get_indexer(mine.ids)
        expected = float((mine.values != base.values[order]).mean())
        row = m[(m.variant == "int8") & (m.target == target) & (m.delegate == delegate) & (m.scope == "overall")]
        assert row["frac_logits_diff"].tolist() == [expected]
    assert m.loc[m.variant == "float16", "frac_logits_diff"].isna().all()  # no reference-kernel job of it
