"""The report opens in headless Chromium (Debian's ``chromium``) without errors and shows its charts."""

from __future__ import annotations

import numpy as np
import pytest

from harness.report.render import write_report
from support.chromium import CHROMIUM, PAGE_ERRORS, screenshot

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium): "
                             "cannot check that the HTML report opens in a browser")


def test_report_opens_in_headless_chromium_and_shows_charts(report_run, tmp_path):
    import matplotlib.image

    files = write_report(report_run, tmp_path / "report.html", n_resamples=100)
    result, shot = screenshot(files.html, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert shot.exists(), output[-2000:]
    assert PAGE_ERRORS.search(output) is None, PAGE_ERRORS.search(output).group(0)

    pixels = matplotlib.image.imread(shot)[..., :3]  # floats in [0, 1]
    assert pixels.shape[:2] == (2000, 1200)
    non_white = (pixels < 0.94).any(axis=2).mean()
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    coloured = (spread > 0.25).mean()  # chart markers, bars, heatmap cells; text is grey
    assert non_white > 0.05, f"screenshot is almost blank ({non_white:.1%} non-white)"
    assert coloured > 0.002, f"no chart colours in the screenshot ({coloured:.2%} coloured pixels)"
    assert float(np.var(pixels)) > 1e-3


def test_a_blank_page_fails_the_same_check(tmp_path):
    """The screenshot check can fail: an empty page gives an (almost) white image."""
    import matplotlib.image

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    result, shot = screenshot(blank, tmp_path)
    assert result.returncode == 0
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert (pixels < 0.94).any(axis=2).mean() < 0.05
