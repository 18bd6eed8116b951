"""Each chart renders to a PNG for the smallest inputs too (one job, one group, missing groups)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from harness.metrics.stats import run_stats
from harness.report import plots
from harness.rundir import read_run


def decode(png: bytes) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


@pytest.fixture(scope="module")
def one_job(tmp_path_factory, synthetic):
    run_dir = synthetic.make_run_dir(tmp_path_factory.mktemp("plots") / "run", sizes={"only": 200},
                                     variants={"int8": {"only": (0.7, 0.8)}})
    run = read_run(run_dir)
    return run, run_stats(run, n_resamples=50)


def test_single_job_single_group_charts(one_job):
    run, stats = one_job
    frames = {job: run.per_sample(*job) for job in run.jobs()}
    for png in (plots.accuracy_plot(stats.groups), plots.drop_heatmap(stats.groups),
                plots.distribution_plot(frames), plots.flips_plot(stats.groups)):
        image = decode(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
        assert (image[..., :3] < 0.9).any(axis=2).mean() > 0.01  # something was drawn


def test_calibration_chart_with_a_group_missing_from_one_side():
    png = plots.calibration_plot({"a": 0.5, "b": 0.5}, {"a": 30, "c": 70})
    assert decode(png).shape[1] > 200


def test_distribution_rows_are_capped(one_job):
    run, _ = one_job
    frame = run.per_sample(*run.jobs()[0])
    many = {(f"v{i:02d}", "t", "d"): frame for i in range(plots.MAX_DISTRIBUTION_JOBS + 3)}
    few = {k: many[k] for k in sorted(many)[:plots.MAX_DISTRIBUTION_JOBS]}
    assert decode(plots.distribution_plot(many)).shape == decode(plots.distribution_plot(few)).shape


def test_dollar_signs_in_names_are_text_not_tex():
    # "$\\x$" would be a mathtext parse error if it were read as TeX
    png = plots.calibration_plot({"$\\x$": 0.5, "a$b": 0.5}, {"$\\x$": 10, "a$b": 10})
    assert decode(png).shape[1] > 200
