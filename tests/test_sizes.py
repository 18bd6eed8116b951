"""Size limits for the code in harness/, models/ and device_runner/ (issue 12).

No module above MAX_MODULE_LINES lines and no function (or method) above MAX_FUNCTION_LINES lines,
counted from its ``def`` line to its last line, docstring included (decorators not counted).
A module that must stay longer says why in MODULE_EXEMPTIONS; the function limit has no exemption.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "models", "device_runner")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MODULE_EXEMPTIONS = {
    # It plays TFLite's benchmark_model binary: one self-contained file pushed to a device on its
    # own and run by the device's Python, importing nothing else from qskew (see its docstring).
    "device_runner/benchmark_model_standin.py": "pushed to devices as one file, like the binary it plays",
}


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def long_modules(paths, limit: int = MAX_MODULE_LINES, exempt=MODULE_EXEMPTIONS) -> list[str]:
    """``"path: N lines"`` for each module of ``paths`` above ``limit`` lines and not exempt."""
    found = []
    for path in paths:
        name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        lines = _line_count(path)
        if lines > limit and name not in exempt:
            found.append(f"{name}: {lines} lines")
    return found


def long_functions(paths, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"path:line name: N lines"`` for each function or method above ``limit`` lines."""
    found = []
    for path in paths:
        name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_module_is_too_long():
    found = long_modules(_modules())
    assert not found, f"modules above {MAX_MODULE_LINES} lines:\n" + "\n".join(found)


def test_no_function_is_too_long():
    found = long_functions(_modules())
    assert not found, f"functions above {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_exemptions_name_existing_modules():
    assert all((ROOT / name).is_file() for name in MODULE_EXEMPTIONS)


@pytest.mark.parametrize("body_lines, flagged", [(MAX_FUNCTION_LINES - 2, False), (MAX_FUNCTION_LINES - 1, True)])
def test_the_function_count_runs_from_def_to_the_last_line(tmp_path, body_lines, flagged):
    """A def line, a docstring line and ``body_lines`` lines: 60 lines pass, 61 are flagged."""
    source = tmp_path / "planted.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(body_lines))
    source.write_text(f'@decorator\ndef planted():\n    """Doc."""\n{body}\n\nAFTER = 1\n', encoding="utf-8")
    assert bool(long_functions([source])) is flagged


def test_a_long_module_is_flagged_unless_exempt(tmp_path):
    source = tmp_path / "planted.py"
    source.write_text("x = 1\n" * (MAX_MODULE_LINES + 1), encoding="utf-8")
    assert long_modules([source]) == [f"{source}: {MAX_MODULE_LINES + 1} lines"]
    assert long_modules([source], exempt={str(source): "planted"}) == []
    source.write_text("x = 1\n" * MAX_MODULE_LINES, encoding="utf-8")
    assert long_modules([source]) == []
