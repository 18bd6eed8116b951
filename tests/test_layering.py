"""The import rules of pyproject.toml's [tool.importlinter] hold, and they would catch a breach.

The rules (layers of harness/, no cycle between siblings at any depth, device_runner standing
alone, the core without models/, third-party libraries kept to their one package) are data in
pyproject.toml; import-linter checks them on the import graph grimp builds from the source.
The planted-breach tests copy the source to a temporary folder, add one bad import there and
check that the same command then fails naming it: a test of the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "device_runner", "models")
LINT_TIMEOUT_S = 300  # building the graph takes a few seconds; generous for a loaded machine


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the tree at ``root`` (its pyproject.toml, its packages first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root, env=env, text=True,
                          capture_output=True, timeout=LINT_TIMEOUT_S)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and pyproject.toml, to plant a bad import in."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}  # planted by tests/test_layering.py\n")


def test_the_import_rules_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tree):
    plant(tree, "harness.targets.base", "import harness.farm.schedule")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "harness.targets.base -> harness.farm.schedule" in result.stdout


def test_a_cycle_between_siblings_breaks_the_rules(tree):
    # quantize.variants is imported by quantize.convert; importing convert back closes a cycle
    # inside one layer, which the layers contract alone would not see
    plant(tree, "harness.quantize.variants", "import harness.quantize.convert")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "no import cycle" in result.stdout and "BROKEN" in result.stdout


def test_the_device_runner_importing_the_host_breaks_the_rules(tree):
    plant(tree, "device_runner.protocol", "import harness.errors")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "device_runner.protocol -> harness.errors" in result.stdout


def test_only_quantize_drives_the_tflite_converter():
    # import-linter sees "tensorflow" as one package, so the converter rule is read from the source
    users = sorted(str(p.relative_to(ROOT)) for name in PACKAGES for p in (ROOT / name).rglob("*.py")
                   if "TFLiteConverter" in p.read_text() and not p.is_relative_to(ROOT / "harness" / "quantize"))
    assert users == []


def test_ray_outside_the_farm_breaks_the_rules(tree):
    plant(tree, "harness.evaluate", "import ray")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "only farm/ drives Ray" in result.stdout and "harness.evaluate -> ray" in result.stdout
