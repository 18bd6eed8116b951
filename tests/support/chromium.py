"""Headless Chromium (Debian's ``chromium``): screenshot an HTML page; console lines of a broken page."""

from __future__ import annotations

import re
import shutil

from harness.targets.process import run_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT_S = 120  # a cold start on a busy 2-core machine takes ~5-20 s
# Console lines that mean the page itself is broken (a missing resource, a script error).
PAGE_ERRORS = re.compile(r"Failed to load resource|Uncaught|net::ERR_|Not allowed to load local resource")


def screenshot(html, tmp_path):
    shot = tmp_path / "shot.png"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", "--window-size=1200,2000", "--enable-logging=stderr", "--v=0", html.as_uri()]
    result = run_command(argv, timeout_s=CHROMIUM_TIMEOUT_S)
    return result, shot
