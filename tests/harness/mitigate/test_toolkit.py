"""The ``mitigate`` extra (harness/mitigate/toolkit.py): without tf-keras/tfmot, QAT names the extra.

The packages are installed here (the ``test`` extra brings them), so a missing one is played by a
``None`` entry in ``sys.modules``: ``import`` and ``importlib.util.find_spec`` then fail for it the
way they do for a package that is not installed.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import QskewError
from harness.mitigate import toolkit

ROOT = Path(__file__).resolve().parents[3]
HINT = "pip install 'qskew[mitigate]'"
BLOCK = "import sys; sys.modules['tf_keras'] = sys.modules['tensorflow_model_optimization'] = None; "


def _block(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_installed_packages_pass():
    assert toolkit.missing() == []
    toolkit.require()


@pytest.mark.parametrize("blocked, named", [
    (("tf_keras",), ["tf-keras"]),
    (("tensorflow_model_optimization",), ["tensorflow-model-optimization"]),
    (("tf_keras", "tensorflow_model_optimization"), ["tf-keras", "tensorflow-model-optimization"]),
])
def test_require_and_load_name_the_extra_and_what_is_missing(monkeypatch, blocked, named):
    _block(monkeypatch, *blocked)
    assert toolkit.missing() == named
    for call in (toolkit.require, toolkit.load):
        with pytest.raises(QskewError) as err:
            call()
        message = str(err.value)
        assert HINT in message and " and ".join(named) in message
        assert all(other not in message for other in toolkit.PACKAGES.values() if other not in named)


def test_the_qat_child_reports_the_extra(monkeypatch):
    from harness.mitigate import qat

    _block(monkeypatch, "tensorflow_model_optimization")
    with pytest.raises(QskewError, match=r"pip install 'qskew\[mitigate\]'"):
        qat._import_toolkit()


def test_mitigate_stops_before_any_work(monkeypatch, tmp_path):
    from harness.mitigate.mitigate import mitigate
    from harness.mitigate.options import MitigationOptions

    _block(monkeypatch, "tf_keras")
    with pytest.raises(QskewError, match=r"needs tf-keras, not installed here; install with: "
                                         r"pip install 'qskew\[mitigate\]'"):
        mitigate(None, None, None, tmp_path / "run", MitigationOptions())
    assert not (tmp_path / "run").exists()


def test_qskew_mitigate_without_the_extra_says_how_to_install_it(tmp_path):
    """The whole command, as a user without the extra runs it: one error line, exit code 2."""
    code = BLOCK + "from harness.cli import main; sys.exit(main(['mitigate', '--out', sys.argv[1]]))"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert HINT in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def _package_modules():
    for package in ("harness", "models", "device_runner"):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_only_the_toolkit_imports_them():
    """No import statement anywhere names them: everything goes through ``toolkit.load``."""
    found = []
    for path, _ in _package_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names
                      if n.split(".")[0] in toolkit.PACKAGES]
    assert found == []


def test_every_module_imports_without_the_extra():
    modules = [name for _, name in _package_modules() if not name.endswith("__main__")]  # those run on import
    code = BLOCK + "import importlib; [importlib.import_module(m) for m in sys.argv[1:]]"
    proc = subprocess.run([sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
