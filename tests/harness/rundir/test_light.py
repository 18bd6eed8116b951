"""The light reader (``harness.rundir.light``): each job's cells from its stored metrics equal the
cells recomputed from its predictions; runs it cannot read so return None; bad files name themselves."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ResultsError
from harness.metrics.cells import cells_of_frame
from harness.rundir import layout, read_run
from harness.rundir.light import read_light
from support.attribute_runs import make_attribute_run
from support.synthetic_runs import add_job_scored_against_another_reference, make_run_dir

DATA = Path(__file__).parent / "data"
MILD = {"fp32": {}, "int8": {"majority": (0.95, 0.3), "minority": (0.7, 0.8)}}


def recomputed(run_dir: Path):
    """The cells the full path computes: from the predictions recomputed from the stored logits."""
    run = read_run(run_dir)
    frame = pd.concat([run.per_sample(*job) for job in run.jobs("ok")], ignore_index=True)
    return cells_of_frame(frame, run.attributes)


def same_cells(light, full) -> None:
    assert [(c.job, c.attribute, c.names) for c in light] == [(c.job, c.attribute, c.names) for c in full]
    for a, b in zip(light, full):
        np.testing.assert_array_equal(a.counts, b.counts)


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    return make_attribute_run(tmp_path_factory.mktemp("light") / "run", targets=("local", "pixel7"))


def test_cells_from_stored_metrics_equal_the_cells_from_the_predictions(tmp_path, attribute_run):
    one = make_run_dir(tmp_path / "one", variants=MILD, delegates=("xnnpack", "reference"))
    for run_dir in (one, attribute_run):
        light = read_light(run_dir)
        assert light is not None and len(light.cells) > 2
        assert sum(c.counts.sum(axis=0) for c in light.cells).all()   # every kind of cell, each to recover
        same_cells(light.cells, recomputed(run_dir))


def test_group_sizes_jobs_and_summary_are_the_full_readers(attribute_run):
    light, full = read_light(attribute_run), read_run(attribute_run)
    assert light.test_group_sizes() == full.test_group_sizes()
    assert ("sex\u00d7race", "F\u00d7B") in light.test_group_sizes()
    assert light.jobs() == full.jobs() and light.summary == full.summary and light.manifest == full.manifest
    assert light.attributes == full.attributes


def test_a_schema2_metrics_part_without_the_attribute_column_reads_as_attribute_group(tmp_path):
    run_dir = make_run_dir(tmp_path / "run", variants=MILD)
    for path in (run_dir / layout.METRICS_DIR).glob("*.csv"):
        table = pd.read_csv(path, keep_default_na=False, dtype=str)
        table.drop(columns=["attribute"]).to_csv(path, index=False)
    same_cells(read_light(run_dir).cells, recomputed(run_dir))


def test_a_metrics_part_saved_with_a_byte_order_mark_reads_as_read_run_reads_it(tmp_path):
    """A spreadsheet's "CSV UTF-8" puts a BOM first; pandas (read_run) skips it, so does the light reader."""
    run_dir = make_run_dir(tmp_path / "run", variants=MILD)
    for path in (run_dir / layout.METRICS_DIR).glob("*.csv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(read_run(run_dir).metrics)
    same_cells(read_light(run_dir).cells, recomputed(run_dir))


def test_runs_it_cannot_read_light_return_none(tmp_path):
    assert read_light(shutil.copytree(DATA / "schema1", tmp_path / "old")) is None
    no_counts = make_run_dir(tmp_path / "no-counts", variants=MILD)
    manifest = json.loads((no_counts / "manifest.json").read_text())
    del manifest["dataset"]["group_counts"]
    (no_counts / "manifest.json").write_text(json.dumps(manifest))
    assert read_light(no_counts) is None
    other = make_run_dir(tmp_path / "other", variants=MILD)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["dataset"]["group_counts"]["test"]["minority"] += 1   # not the test set the jobs ran on
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert read_light(other) is None


def test_jobs_scored_against_another_reference_are_read_in_full(tmp_path):
    """A resumed session that recomputed the reference scored its job against other outputs than the
    stored reference rows: its metrics' cells are not what read_run (and report) compute."""
    run_dir = make_run_dir(tmp_path / "run", variants=MILD)
    assert read_light(run_dir) is not None
    add_job_scored_against_another_reference(run_dir, ("int8", "pixel7", "xnnpack"), MILD["int8"])
    assert read_light(run_dir) is None


def _edit_first_group_row(run_dir: Path, column: str, value: str) -> Path:
    path = sorted((run_dir / layout.METRICS_DIR).glob("*.csv"))[0]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[1][column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_rates_that_are_no_counts_and_wrong_headers_are_errors_naming_the_file(tmp_path):
    run_dir = make_run_dir(tmp_path / "rate", variants=MILD)
    path = _edit_first_group_row(run_dir, "acc", "0.123456789")
    with pytest.raises(ResultsError, match=rf"{path.name} line 3 \(group '.+'\): acc=0.123456789 is not a count"):
        read_light(run_dir)
    for column, value, what in (("n", "150.0", "an integer"), ("acc", "", "a number")):
        run_dir = make_run_dir(tmp_path / f"{column}-value", variants=MILD)
        path = _edit_first_group_row(run_dir, column, value)
        with pytest.raises(ResultsError, match=rf"{path.name} line 3 \(group '.+'\): {column}='{value}' is not {what}"):
            read_light(run_dir)
    run_dir = make_run_dir(tmp_path / "twice", variants=MILD)
    path = sorted((run_dir / layout.METRICS_DIR).glob("*.csv"))[0]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[1 + 1]]) + "\n")   # the first group's row again, at the end
    with pytest.raises(ResultsError, match=rf"{path.name} line {len(lines) + 1}: group '.+' has a row already \(line 3\)"):
        read_light(run_dir)
    run_dir = make_run_dir(tmp_path / "header", variants=MILD)
    path = sorted((run_dir / layout.METRICS_DIR).glob("*.csv"))[0]
    path.write_text(path.read_text().replace("flip_rate,", "flips,", 1))
    with pytest.raises(ResultsError, match=rf"{path.name} has columns .*'flips'"):
        read_light(run_dir)
    missing = make_run_dir(tmp_path / "missing", variants=MILD)
    sorted((missing / layout.METRICS_DIR).glob("*.csv"))[0].unlink()
    with pytest.raises(ResultsError, match="is missing"):
        read_light(missing)
