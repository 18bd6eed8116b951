"""harness/records/heap.py: a block freed after a larger one is given back to the system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Frees an 8 MB block (glibc then raises its mmap threshold to 8 MB), then makes and frees a 4 MB
# block and prints how much of it stayed resident (RssAnon, MB).
SCRIPT = """
import sys
import numpy as np
from harness.records.heap import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:")) / 1024
big = np.ones(8 << 20, np.uint8)
del big
before = anon()
block = np.ones(4 << 20, np.uint8)
del block
print(anon() - before)
"""


def _kept_mb(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's defaults
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc and /proc/self/status")
def test_a_freed_block_is_given_back_after_a_larger_one_was_freed():
    assert _kept_mb("default") >= 3  # glibc's moving threshold: the 4 MB came from its heap and stayed
    assert _kept_mb("fixed") < 1
