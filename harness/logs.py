"""One logging setup for the ``qskew`` command, and loggers that name the device and job.

The library only creates loggers (``logging.getLogger(__name__)``); the CLI calls :func:`configure`
once per command so that every record, every Python warning and TensorFlow's and absl's lines go
to stderr in one format, never into the tables on stdout::

    configure(debug=False, quiet=False)   # warnings and errors; TF/absl only from errors up
    configure(debug=True)                 # harness debug lines, TF and absl logs as they come
    configure(quiet=True)                 # errors only

Every line is written through :class:`EscapingFormatter`: control characters other than newline
and tab (an ESC starting an ANSI sequence in a device's name or error) are escaped
(``harness.text.escape_controls``), so nothing a device says reaches the terminal raw.

Log lines about a device or a job carry a prefix such as ``[pixel7 int8/xnnpack]``::

    log = job_logger(logging.getLogger(__name__), device="pixel7", job="int8/xnnpack")
    log.info("runner exited %d", 0)       # -> "[pixel7 int8/xnnpack] runner exited 0"
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from harness import text

LIBRARY_LOGGERS = ("harness", "models", "device_runner")  # raised to DEBUG by --debug
NOISY_LOGGERS = ("tensorflow", "absl")  # their lines: errors only unless --debug
# Python warnings raised inside these packages (e.g. the converter's "Statistics for quantized
# inputs were expected") are their internals talking, not something a qskew user can act on.
NOISY_WARNING_SOURCE = re.compile(r"\S*[/\\](tensorflow|tf_keras|keras|absl)[/\\]")  # "path:line: ..."
NORMAL_FORMAT = "%(levelname)s: %(message)s"  # like "WARNING: sign-off verdict is WARN ..."
DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# TensorFlow's C++ side and absl read these when they load; "3" keeps only fatal lines.
TF_ENV_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3"}

_handler: logging.Handler | None = None  # the handler configure() installed, so a second call replaces it
_saved_levels: dict[str, int] = {}
_debug = False  # configure()'s debug flag, for a TensorFlow import that happens later (with_tensorflow)


def configure(debug: bool = False, quiet: bool = False, stream=None) -> None:
    """Send log records and warnings to ``stream`` (default: the current stderr) at the chosen level.

    Normal: WARNING and up. ``debug``: the library's DEBUG lines, third-party INFO and TensorFlow's
    logs. ``quiet`` (ignored with ``debug``): ERROR and up, so warnings are hidden too. Calling it
    again replaces the earlier setup; :func:`reset` undoes it.
    """
    global _handler, _debug
    reset()
    _debug = debug
    level = logging.INFO if debug else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(EscapingFormatter(DEBUG_FORMAT if debug else NORMAL_FORMAT))
    root = logging.getLogger()
    _remember(root, "")
    root.addHandler(handler)
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        _remember(logging.getLogger(name), name).setLevel(logging.DEBUG if debug else logging.NOTSET)
    for name in NOISY_LOGGERS:
        _remember(logging.getLogger(name), name).setLevel(logging.NOTSET if debug else logging.ERROR)
    logging.captureWarnings(True)  # warnings.warn(...) -> logger "py.warnings" -> this handler
    _handler = handler
    if not debug:
        handler.addFilter(_drop_noisy_warnings)
        quiet_tensorflow()


class EscapingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose lines hold no raw control characters but newline and tab."""

    def format(self, record: logging.LogRecord) -> str:
        return text.escape_controls(super().format(record), keep=text.LINE_BREAKS)


def reset() -> None:
    """Undo :func:`configure`: remove its handler, restore logger levels, stop capturing warnings."""
    global _handler
    if _handler is None:
        return
    logging.getLogger().removeHandler(_handler)
    _handler = None
    for name, level in _saved_levels.items():
        logging.getLogger(name or None).setLevel(level)
    _saved_levels.clear()
    logging.captureWarnings(False)


def _drop_noisy_warnings(record: logging.LogRecord) -> bool:
    """False for a captured Python warning raised inside TensorFlow, Keras or absl."""
    return not (record.name == "py.warnings" and NOISY_WARNING_SOURCE.match(record.getMessage()))


def _remember(logger: logging.Logger, name: str) -> logging.Logger:
    _saved_levels.setdefault(name, logger.level)
    return logger


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and absl's log lines to errors (unless the user set the variables already)."""
    for key, value in TF_ENV_QUIET.items():
        os.environ.setdefault(key, value)
    if "absl.logging" in sys.modules:  # once imported, absl keeps its own verbosity
        absl_logging = sys.modules["absl.logging"]
        absl_logging.set_verbosity(absl_logging.ERROR)


@contextlib.contextmanager
def redirect_fd(fd: int, to_fd: int | None) -> Iterator[None]:
    """Point file descriptor ``fd`` at ``to_fd`` (None: /dev/null) for a while, at the OS level.

    TensorFlow's C++ start-up lines and the converter's ``fully_quantize: ...`` line are written
    straight to fds 2 and 1, past Python's sys.stdout/sys.stderr, so only this silences them.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(fd)
    target = os.open(os.devnull, os.O_WRONLY) if to_fd is None else to_fd
    try:
        os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        if to_fd is None:
            os.close(target)


def import_tensorflow_quietly(debug: bool) -> None:
    """Import TensorFlow once with fd 2 silenced (it ignores TF_CPP_MIN_LOG_LEVEL for these lines)."""
    if debug or "tensorflow" in sys.modules:
        return
    with redirect_fd(2, None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its import-time deprecation chatter is not the user's
        import tensorflow  # noqa: F401
    quiet_tensorflow()


def with_tensorflow(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` after a quiet TensorFlow import (per :func:`configure`'s debug flag):
    for the commands that import TensorFlow only when a cache misses."""
    import_tensorflow_quietly(_debug)
    return fn(*args, **kwargs)


class JobLoggerAdapter(logging.LoggerAdapter):
    """Prefixes each message with ``[device job]`` and puts both into the record (``qskew_device``,
    ``qskew_job``) for handlers that want them as fields."""

    def process(self, msg: Any, kwargs: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        kwargs = dict(kwargs)
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return f"[{self.extra['qskew_context']}] {msg}", kwargs


def job_logger(logger: logging.Logger | str, device: str | None = None,
               job: str | None = None) -> JobLoggerAdapter:
    """``logger`` (or the logger of that name) with a ``[device job]`` prefix, e.g. ``[pixel7 int8/xnnpack]``."""
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    context = " ".join(part for part in (device, job) if part) or "-"
    return JobLoggerAdapter(logger, {"qskew_device": device, "qskew_job": job, "qskew_context": context})
