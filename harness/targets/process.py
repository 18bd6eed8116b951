"""The one function that starts local processes (STYLE.md rule 3): tests and logs have one seam.

Everything that runs a program on this machine (the local target's runner, ``adb`` in conformance
tests, compilers) goes through :func:`run_command`, which never uses a shell, so arguments are
passed verbatim however hostile they are.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import CommandTimeout, TargetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def run_command(argv: Sequence[str], timeout_s: float, cwd: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None, device: str = "local",
                stdin_bytes: bytes | None = None) -> CommandResult:
    """Run ``argv`` (no shell) and wait at most ``timeout_s`` seconds.

    Returns the result whatever the exit code; callers decide what a non-zero code means.
    Raises CommandTimeout (the process group is killed) or TargetError if it cannot start.

    >>> run_command(["python3", "-c", "print(6*7)"], timeout_s=30).stdout.strip()
    '42'
    """
    argv = tuple(str(a) for a in argv)
    full_env = None if env is None else {**os.environ, **env}
    log.debug("[%s] run %s", device, argv)
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise TargetError(f"cannot start {argv[0]!r}: {exc}", device) from exc
    try:
        out, err = proc.communicate(input=stdin_bytes, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        out, err = proc.communicate()
        raise CommandTimeout(list(argv), timeout_s, _decode(out) + _decode(err), device) from exc
    except BaseException:
        _kill_group(proc)
        raise
    return CommandResult(argv, proc.returncode, _decode(out), _decode(err), time.perf_counter() - start)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
