"""The lint: ``ruff check`` with pyproject.toml's ``[tool.ruff]`` finds nothing in the project's code.

ruff comes with the ``test`` extra. The second test plants a file with an unused import, so a
configuration that selects nothing (or a ruff that is not run) cannot pass unnoticed.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("harness", "device_runner", "models", "tests", "benchmarks")


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_ruff_finds_nothing():
    proc = _ruff(*CHECKED)
    assert proc.returncode == 0, f"ruff check {' '.join(CHECKED)}:\n{proc.stdout}{proc.stderr}"


def test_ruff_reports_a_planted_finding(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\n\ndef f():\n    return undefined_name\n", encoding="utf-8")
    proc = _ruff(str(planted), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "F401" in proc.stdout and "F821" in proc.stdout


def test_no_script_shadows_a_standard_library_module():
    """Scripts in benchmarks/ (and examples/) run with their own folder first on sys.path, so a script
    named like a standard module (``bisect.py``) breaks every import of it there: ``random``, and
    through it ``tempfile``, import ``bisect``."""
    clashes = sorted(f"{folder}/{path.name}" for folder in ("benchmarks", "examples")
                     for path in (ROOT / folder).glob("*.py") if path.stem in sys.stdlib_module_names)
    assert clashes == []
