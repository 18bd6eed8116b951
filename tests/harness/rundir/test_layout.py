"""The run directory's names: part names safe for any job, and in finishing order."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.metrics.groups import METRIC_COLUMNS
from harness.rundir import layout

HOSTILE = [("int8", "phone", "external:/opt/lib.so,key=v"), ("int8", "../../etc", "a b\nc"),
           ("int8", "phone", "NUL\x00"), ("é", "Ω", "☃"), ("int8", "phone", "x" * 5000)]


@pytest.mark.parametrize("job", HOSTILE)
def test_a_job_key_is_a_short_hex_name_whatever_the_job_holds(job):
    key = layout.job_key(job)
    assert len(key) == layout.KEY_HEX_DIGITS and set(key) <= set("0123456789abcdef")
    assert layout.job_key(job) == key  # the same job always gets the same name
    path = layout.part_path(Path("/run"), layout.PREDICTIONS_DIR, 3, key)
    assert path.parent == Path("/run/predictions") and layout.parse_part(path) == (3, key)


def test_distinct_jobs_get_distinct_keys():
    jobs = HOSTILE + [("a", "b", "c"), ("a", "bc", ""), ("ab", "c", ""), layout.REFERENCE_JOB]
    assert len({layout.job_key(j) for j in jobs}) == len(jobs)


def test_part_names_sort_in_finishing_order():
    names = [layout.part_stem(seq, layout.job_key(("v", str(seq), "d"))) for seq in (2, 10, 100, 9)]
    assert sorted(names) == [names[0], names[3], names[1], names[2]]


@pytest.mark.parametrize("name", [".000001-0123456789abcdef.json.x1.tmp", "000001-0123456789abcdef.csv",
                                  "1-0123456789abcdef.json", "000001-0123456789ABCDEF.json", "notes.json"])
def test_what_is_not_a_summary_part_is_recognised(name):
    assert layout.parse_part(Path("/run/summary") / name) is None


def test_stored_metrics_leave_out_the_columns_computed_across_jobs():
    assert list(layout.metrics_columns()) == list(METRIC_COLUMNS)
    stored = layout.metrics_columns(stored=True)
    assert list(stored) == [c for c in METRIC_COLUMNS if c not in layout.CROSS_JOB_COLUMNS]


def test_every_run_directory_holds_the_manifest_and_the_part_folders():
    assert layout.FILES == ("manifest.json", "predictions", "metrics", "placement", "summary")
    assert layout.PART_DIRS[-1] == layout.SUMMARY_DIR  # written last: it marks a job finished
    assert layout.SCHEMA_VERSION == 4  # 4: the metrics table's step columns (computed when read)
