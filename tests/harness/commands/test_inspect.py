"""``qskew inspect`` on a tiny real model, and the output discipline every command shares: results on
stdout, warnings and log lines on stderr, with --json one JSON document alone on stdout."""

from __future__ import annotations

import json
import logging
import os
import warnings

import pytest

from harness.cli import EXIT_ERROR, main
from support import tiny_models as tiny


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")["int8"]


@pytest.fixture
def noisy_inspect(monkeypatch):
    """inspect_model that first prints, writes to fd 1 like native code, warns and logs a warning."""
    import harness.quantize.inspect as inspect_module

    real = inspect_module.inspect_model

    def noisy(path):
        print("python chatter")
        os.write(1, b"native chatter\n")
        warnings.warn("a library warning", UserWarning)
        logging.getLogger("harness.quantize.inspect").warning("a library log line")
        return real(path)

    monkeypatch.setattr(inspect_module, "inspect_model", noisy)


def test_table_of_the_model(int8_model, capfd):
    assert main(["inspect", str(int8_model)]) == 0
    out, err = capfd.readouterr()
    assert "FULLY_CONNECTED" in out and "int8" in out and err == ""


def test_warnings_and_log_lines_go_to_stderr_not_into_the_table(int8_model, noisy_inspect, capfd):
    assert main(["inspect", str(int8_model)]) == 0
    out, err = capfd.readouterr()
    assert "FULLY_CONNECTED" in out
    assert "a library warning" in err and "WARNING: a library log line" in err
    assert "a library warning" not in out and "a library log line" not in out


def test_json_stdout_is_exactly_one_document(int8_model, noisy_inspect, capfd):
    assert main(["inspect", str(int8_model), "--json"]) == 0
    out, err = capfd.readouterr()
    doc = json.loads(out)  # one document and nothing else: extra text fails to parse
    assert out == json.dumps(doc, indent=2) + "\n"
    assert doc["inputs"][0]["dtype"] == "int8" and doc["outputs"][0]["dtype"] == "int8"
    for line in ("python chatter", "native chatter", "a library warning", "a library log line"):
        assert line in err


def test_quiet_shows_only_errors(int8_model, noisy_inspect, tmp_path, capfd):
    assert main(["inspect", str(int8_model), "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert "FULLY_CONNECTED" in out and "a library warning" not in err and "a library log line" not in err
    assert main(["--quiet", "inspect", str(tmp_path / "missing.tflite")]) == EXIT_ERROR
    assert capfd.readouterr().err.startswith("qskew: error:")


def test_logging_is_undone_after_the_command(int8_model):
    root_handlers = list(logging.getLogger().handlers)
    assert main(["inspect", str(int8_model), "--debug"]) == 0
    assert logging.getLogger().handlers == root_handlers
