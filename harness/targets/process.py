"""The one function that starts local processes (STYLE.md rule 3): tests and logs have one seam.

Everything that runs a program on this machine (the local target's runner, ``adb`` in conformance
tests, compilers) goes through :func:`run_command`, which never uses a shell, so arguments are
passed verbatim however hostile they are; a process that stays up and takes requests (the runner's
``--serve`` mode) is a :class:`ServedProcess`, started here too.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from harness.errors import CommandTimeout, TargetError

log = logging.getLogger(__name__)

SERVED_EXIT_S = 5.0  # a served process given end of input exits at once; after this it is killed


class ServedLost(TargetError):
    """The link under a served process broke during a request: its answer is lost (the process
    may still run on the device); the caller ends it and runs the request another way."""


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


class ServedProcess:
    """A process that stays up and answers requests: one line on its stdin, lines on its stdout up
    to one that ``is_last`` recognises (the runner's ``QSKEW-DONE <code>``).

    Its stdout is read by a thread into a queue, so a request can wait with a timeout; its stderr is
    drained by another thread (native libraries write there) and handed out with each answer. A
    process that exits mid-request answers with what it printed and its exit code, and is not alive
    afterwards; on a timeout its process group is killed (CommandTimeout).
    """

    def __init__(self, argv: Sequence[str], device: str = "local"):
        self.argv, self.device = tuple(str(a) for a in argv), device
        log.debug("[%s] start served %s", device, self.argv)
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise TargetError(f"cannot start {self.argv[0]!r}: {exc}", device) from exc
        # The threads hold the pipes, not self, so a forgotten ServedProcess is collected; its
        # finalizer then closes the stdin and the runner exits at the end of its input. (Dropping
        # the Popen is not enough: Popen.__del__ keeps a running child's Popen, stdin open, in
        # subprocess._active until the interpreter exits.)
        weakref.finalize(self, _close_quietly, self._proc.stdin)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._err: queue.Queue[str | None] = queue.Queue()
        for pipe, sink in ((self._proc.stdout, self._lines), (self._proc.stderr, self._err)):
            threading.Thread(target=_pump, args=(pipe, sink), daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def greeting(self, timeout_s: float) -> str | None:
        """The first line the process prints (read once, then remembered); None if it exits or
        stays silent for ``timeout_s`` (it is then killed)."""
        if not hasattr(self, "_greeting"):
            try:
                text = self._lines.get(timeout=timeout_s)
            except queue.Empty:
                text = None
            if text is None:
                self.close(kill=True)
            self._greeting = None if text is None else text.rstrip("\n")
        return self._greeting

    def request(self, line: str, timeout_s: float, is_last: Callable[[str], int | None],
                watch: Callable[[str], None] | None = None) -> CommandResult:
        """Send ``line``; collect the answer's lines until ``is_last(line)`` gives the exit code."""
        start, got, code = time.perf_counter(), [], None
        refuse_out_of_step(self, line)
        self._answering = True  # until this answer's last line is read
        try:
            self._proc.stdin.write((line + "\n").encode())
            self._proc.stdin.flush()
        except OSError:
            pass  # it has exited: the read below finds the end of its output
        while code is None:
            left = timeout_s - (time.perf_counter() - start)
            try:
                text = self._lines.get(timeout=max(left, 0.0))
            except queue.Empty:
                _kill_group(self._proc)
                self._proc.wait()
                raise CommandTimeout(list(self.argv) + [line], timeout_s, "".join(got), self.device) from None
            if text is None:  # end of its stdout: it exited
                code = self._proc.wait()
                break
            code = is_last(text.rstrip("\n"))
            if code is None:
                got.append(text)
                if watch is not None:
                    watch(text.rstrip("\n"))
        self._answering = False
        return CommandResult(self.argv + (line,), code, "".join(got), self._stderr(), time.perf_counter() - start)

    def close(self, kill: bool = False) -> None:
        """End the process: close its stdin (a served runner then exits), kill it if it lingers
        (at once with ``kill``)."""
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=0 if kill else SERVED_EXIT_S)
        except (OSError, subprocess.TimeoutExpired):
            _kill_group(self._proc)
            self._proc.wait()

    def _stderr(self) -> str:
        """What the process wrote to stderr since the last request."""
        parts = []
        while True:
            try:
                text = self._err.get_nowait()
            except queue.Empty:
                return "".join(parts)
            parts.append(text or "")


def _close_quietly(pipe) -> None:
    try:
        pipe.close()
    except OSError:
        pass  # the process has gone: nothing left to tell


def _pump(pipe, sink: "queue.Queue[str | None]") -> None:
    """Lines of ``pipe`` into ``sink``, then None at its end."""
    for raw in iter(pipe.readline, b""):
        sink.put(_decode(raw))
    sink.put(None)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def refuse_out_of_step(served, line: str) -> None:
    """An earlier request left unfinished (its caller raised while the answer came: Ctrl-C, a
    progress callback) leaves that job's lines, ``QSKEW-DONE`` included, to be read next: they would
    be taken for ``line``'s answer. Such a process is ended, and ServedLost raised (a new one runs
    the job), before ``line`` is sent. Shared with ``adb_served.ServedShell``."""
    if getattr(served, "_answering", False):
        served.close(kill=True)
        raise ServedLost(f"served {' '.join(served.argv)}: an earlier request was left unfinished, its "
                         f"answer would be taken for {line!r}", served.device)
