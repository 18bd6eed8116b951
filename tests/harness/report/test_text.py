"""The CLI's text tables: group and device names are never cut so that two look alike."""

from harness.report.text import format_summary, format_table
from harness.rundir import read_run
from support.run_kit import LOOKALIKE_DEVICES, LOOKALIKE_GROUPS, write_lookalike_run


def test_the_group_table_shows_lookalike_group_and_device_names_whole(tmp_path):
    run = read_run(write_lookalike_run(tmp_path / "run"))
    text = format_table(run.metrics)
    for name in LOOKALIKE_GROUPS + LOOKALIKE_DEVICES:
        assert f" {name} " in text, name
    assert "~" not in text


def test_the_summary_shows_lookalike_worst_groups_and_devices_whole(tmp_path):
    run = read_run(write_lookalike_run(tmp_path / "run"))
    text = format_summary(run.summary)
    for name in LOOKALIKE_DEVICES:
        assert f" {name} " in text
    worst = {r["worst_group"] for r in run.summary["runs"]}
    assert worst and all(f" {g} " in text for g in worst)
    assert "~" not in text


def test_usual_names_keep_the_table_narrow(tmp_path):
    from support.run_kit import write_small_run

    run_dir, *_ = write_small_run(tmp_path / "run")
    assert max(map(len, format_table(read_run(run_dir).metrics).splitlines())) <= 100
