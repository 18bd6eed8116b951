"""The report opens in headless Chromium (Debian's ``chromium``) without errors and shows its charts."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from harness.report.render import write_report
from harness.targets.process import run_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT_S = 120  # a cold start on a busy 2-core machine takes ~5-20 s
# Console lines that mean the page itself is broken (a missing resource, a script error).
PAGE_ERRORS = re.compile(r"Failed to load resource|Uncaught|net::ERR_|Not allowed to load local resource")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium): "
                             "cannot check that the HTML report opens in a browser")


def screenshot(html, tmp_path):
    shot = tmp_path / "shot.png"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", "--window-size=1200,2000", "--enable-logging=stderr", "--v=0", html.as_uri()]
    result = run_command(argv, timeout_s=CHROMIUM_TIMEOUT_S)
    return result, shot


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
