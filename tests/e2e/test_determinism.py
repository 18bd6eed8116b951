"""Two fresh copies of qskew, each with its own empty cache, print the same demo tables (issue 12).

Each copy trains small_cnn from scratch (seeded, with TensorFlow's op determinism), converts the
six variants and runs them, so anything unseeded on the way shows as a difference. The tables are
compared byte for byte with two exceptions that measure the machine, not the model: the
``run directory:`` line, and the summary's last column (``ms/smp``, wall-clock time per sample).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("harness", "models", "device_runner", "pyproject.toml", "README.md")
TIMING_HEADER = "ms/smp"


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _demo(tree: Path, cache: Path, out: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "QSKEW_CACHE_DIR": str(cache)}
    code = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "demo", "--out", str(out), "--no-progress"], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def comparable(printed: str) -> str:
    """``printed`` without the run-directory line and without the timing column's values."""
    lines, in_timing_table = [], False
    for line in printed.splitlines():
        if line.startswith("run directory:"):
            continue
        in_timing_table = line.rstrip().endswith(TIMING_HEADER) or (in_timing_table and line.strip() != "")
        lines.append(re.sub(r"\s+\S+$", "", line) if in_timing_table else line)
    return "\n".join(lines)


def test_comparable_drops_only_the_path_and_the_timings():
    printed = ("table\n a 1.0\n\nvariant   drop  ms/smp\n-----\nint8     +0.00   0.015\n\nrun directory: /tmp/x\n")
    assert comparable(printed) == "table\n a 1.0\n\nvariant   drop\n-----\nint8     +0.00\n"
    assert comparable(printed.replace("+0.00   0.015", "+0.10   0.015")) != comparable(printed)


@pytest.mark.slow
def test_two_fresh_copies_with_their_own_caches_print_the_same_tables(tmp_path):
    printed = []
    for name in ("a", "b"):
        tree = _copy_sources(tmp_path / f"clone-{name}")
        cache = tmp_path / f"cache-{name}"
        cache.mkdir()
        printed.append(_demo(tree, cache, tmp_path / f"run-{name}"))
    assert "faint" in printed[0] and TIMING_HEADER in printed[0]  # the per-group table and the summary
    assert comparable(printed[0]) == comparable(printed[1])
