"""harness.logs: one handler on stderr at the chosen level, warnings captured, TF/absl quiet, job prefixes."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from harness import logs


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    logs.reset()


def test_normal_level_shows_warnings_not_info(stream):
    logs.configure(stream=stream)
    logging.getLogger("harness.x").info("an info line")
    logging.getLogger("harness.x").warning("a warning line")
    assert stream.getvalue() == "WARNING: a warning line\n"


def test_quiet_shows_only_errors_and_debug_shows_library_debug(stream):
    logs.configure(quiet=True, stream=stream)
    logging.getLogger("harness.x").warning("hidden")
    warnings.warn("also hidden", UserWarning)
    logging.getLogger("harness.x").error("shown")
    assert stream.getvalue() == "ERROR: shown\n"
    logs.configure(debug=True, stream=stream)
    logging.getLogger("harness.x").debug("a debug line")
    assert "DEBUG harness.x: a debug line" in stream.getvalue()


def test_python_warnings_become_log_records(stream):
    logs.configure(stream=stream)
    warnings.warn("careful", UserWarning)
    assert "UserWarning: careful" in stream.getvalue()


def test_tensorflow_and_absl_loggers_are_quiet_unless_debug(stream, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    logs.configure(stream=stream)
    logging.getLogger("tensorflow").warning("tf chatter")
    logging.getLogger("absl").warning("absl chatter")
    assert stream.getvalue() == "" and logs.os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    logs.configure(debug=True, stream=stream)
    logging.getLogger("tensorflow").warning("tf chatter")
    assert "tf chatter" in stream.getvalue()


def test_reset_restores_levels_handlers_and_warnings():
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("tensorflow").level, warnings.showwarning)
    logs.configure(debug=True)
    logs.configure(quiet=True)  # a second call replaces the first, it does not stack a handler
    assert len(root.handlers) == len(before[0]) + 1
    logs.reset()
    after = (list(root.handlers), root.level, logging.getLogger("tensorflow").level, warnings.showwarning)
    assert after == before


def test_job_logger_prefixes_device_and_job(stream):
    logs.configure(stream=stream)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    base = logging.getLogger("harness.test_logs")
    base.addHandler(handler)
    try:
        logs.job_logger(base, device="pixel7", job="int8/xnnpack").warning("runner exited %d", 3)
        logs.job_logger("harness.test_logs", device="pixel7").warning("no job")
        logs.job_logger(base, job="int8/xnnpack").warning("no device")
    finally:
        base.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["WARNING: [pixel7 int8/xnnpack] runner exited 3",
                                              "WARNING: [pixel7] no job", "WARNING: [int8/xnnpack] no device"]
    assert records[0].qskew_device == "pixel7" and records[0].qskew_job == "int8/xnnpack"


def test_warnings_raised_inside_tensorflow_are_dropped_unless_debug(stream):
    def warn_as(filename: str, message: str) -> None:
        warnings.warn_explicit(message, UserWarning, filename, 846)

    logs.configure(stream=stream)
    warn_as("/venv/site-packages/tensorflow/lite/python/convert.py", "Statistics for quantized inputs")
    warn_as("/work/harness/quantize/convert.py", "ours")
    assert "Statistics" not in stream.getvalue() and "UserWarning: ours" in stream.getvalue()
    logs.configure(debug=True, stream=stream)
    warn_as("/venv/site-packages/tensorflow/lite/python/convert.py", "Statistics again")
    assert "Statistics again" in stream.getvalue()


def test_log_lines_never_carry_raw_control_characters(stream):
    logs.configure(stream=stream)
    device = "pixel\x1b[2J\x1b]0;owned\x07"
    logs.job_logger("harness.x", device=device, job="int8/xnnpack").warning("said %s\nline two\tend", "\x9b")
    out = stream.getvalue()
    assert out == ("WARNING: [pixel\\x1b[2J\\x1b]0;owned\\x07 int8/xnnpack] said \\x9b\nline two\tend\n")
