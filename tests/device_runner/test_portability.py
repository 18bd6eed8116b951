"""device_runner must run on boards: Python 3.7+, stdlib + numpy + a TFLite runtime, no harness."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import device_runner
from harness.targets.process import run_command

RUNNER_DIR = Path(__file__).resolve().parents[2] / "device_runner"
RUNNER_FILES = sorted(RUNNER_DIR.glob("*.py"))
SIBLINGS = {p.stem for p in RUNNER_FILES}  # run as a plain script, run.py imports them top-level
ALLOWED_TOP_LEVEL = {"numpy", "ai_edge_litert", "tflite_runtime", "tensorflow", "device_runner"} | SIBLINGS
OLD_PYTHONS = [Path.home() / ".pyenv" / "versions" / v / "bin" / "python" for v in ("3.7.16", "3.9.18")]
TIMEOUT_S = 120.0


def test_runner_files_are_present():
    assert {p.name for p in RUNNER_FILES} >= set(device_runner.RUNNER_FILES)
    assert "run.py" in device_runner.RUNNER_FILES


@pytest.mark.parametrize("name", device_runner.RUNNER_FILES)
def test_pushed_files_import_no_sibling_that_is_not_pushed(name):
    """A board gets RUNNER_FILES only: a sibling module missing from it breaks every device run."""
    pushed = {n[:-len(".py")] for n in device_runner.RUNNER_FILES}
    for module in _imported_modules(RUNNER_DIR / name):
        parts = module.split(".")
        sibling = parts[1] if parts[0] == "device_runner" and len(parts) > 1 else parts[0]
        if sibling in SIBLINGS:
            assert sibling in pushed, f"{name} imports {module}, which the host does not push"


def test_vermin_finds_nothing_newer_than_python_3_7():
    vermin = Path(sys.executable).with_name("vermin")  # a test extra; installed next to python
    assert vermin.exists(), "vermin is missing: pip install -e '.[test]'"
    proc = run_command([str(vermin), "-t=3.7-", "--no-tips", "--violations",
                        str(RUNNER_DIR)], timeout_s=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", RUNNER_FILES, ids=lambda p: p.name)
def test_runner_imports_only_stdlib_numpy_and_runtimes(path):
    for name in _imported_modules(path):
        top = name.split(".")[0]
        assert top != "harness", f"{path.name} imports {name}"
        assert top in ALLOWED_TOP_LEVEL or top in sys.stdlib_module_names, f"{path.name} imports {name}"


@pytest.mark.parametrize("python", OLD_PYTHONS, ids=lambda p: p.parts[-3])
def test_runner_compiles_under_old_python(python, tmp_path):
    if not python.exists():
        pytest.skip(f"{python} is not installed (pyenv); vermin still checks 3.7 syntax")
    code = ("import py_compile, sys\n"
            "for i, f in enumerate(sys.argv[2:]):\n"
            "    py_compile.compile(f, cfile='%s/%d.pyc' % (sys.argv[1], i), doraise=True)\n")
    proc = run_command([str(python), "-c", code, str(tmp_path), *map(str, RUNNER_FILES)],
                       timeout_s=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
