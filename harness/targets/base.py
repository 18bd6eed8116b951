"""The device boundary: a small abstract ``Target`` that everything device-specific lives below.

A target is a place where a runner can execute: this machine (``LocalTarget``), or a phone/board
reached over ADB (``harness.targets.adb.AdbTarget``). The pipeline talks to a device only through these methods, with
remote paths as plain POSIX strings in the device's own file system.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.targets.process import CommandResult


@dataclass(frozen=True)
class RemoteStat:
    """Size and mode of a file on a target; ``None`` from ``stat`` means it does not exist."""

    size_bytes: int
    mode: int
    mtime: int
    mtime_ns: int = 0   # where the device tells it (the local target): a rewrite within a second shows


class Target(abc.ABC):
    """A device that can hold files and run the qskew runner.

    ``name`` identifies the device in logs, errors and the run directory; ``workdir`` is a folder
    on the device that qskew owns (its content-addressed cache and job folders live below it);
    ``python`` is the interpreter that runs ``device_runner``.
    """

    name: str
    workdir: str
    python: str

    @abc.abstractmethod
    def push(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (parent folders are created)."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to a local file."""

    @abc.abstractmethod
    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` on the device and return its exit code and output (any exit code)."""

    def run_detached(self, argv: Sequence[str], job_dir: str, timeout_s: float,
                     cwd: str | None = None,
                     watch: Callable[[str], None] | None = None) -> CommandResult:
        """Run a long command (the device runner) and wait for it, surviving a dropped link.

        A target whose link can drop (ADB) starts ``argv`` in the background on the device with
        its stdout, stderr and exit status written to files in ``job_dir`` (a folder the caller
        owns), polls it with short commands until it exits or ``timeout_s`` passes, reconnects
        and polls again if the connection drops, and kills the process group on timeout
        (CommandTimeout). ``watch``, if given, is called at each poll with the last line the command
        has printed so far (the runner's progress). This default, for targets whose link cannot
        drop, is plain ``run`` (and never calls ``watch``).
        """
        return self.run(argv, timeout_s=timeout_s, cwd=cwd)

    def serve(self, argv: Sequence[str]) -> Any | None:
        """A process running ``argv`` that stays up for this target's session and takes requests
        (a :class:`harness.targets.process.ServedProcess`: ``request(line, timeout_s, is_last,
        watch)``), or None where the target keeps no such process; callers then start one process
        per job with :meth:`run_detached`. A dead process is replaced on the next call; ``close``
        ends them."""
        return None

    @abc.abstractmethod
    def stat(self, remote: str) -> RemoteStat | None:
        """Size and mode of ``remote``, or None if it does not exist."""

    @abc.abstractmethod
    def sha256(self, remote: str) -> str | None:
        """sha256 hex digest of ``remote``, or None if it does not exist."""

    @abc.abstractmethod
    def mkdirs(self, remote: str) -> None:
        """Create ``remote`` and its parents if missing."""

    def properties(self) -> Mapping[str, Any]:
        """Facts about the device recorded in the run manifest (model, ABI, OS...)."""
        return {"name": self.name}

    def close(self) -> None:
        """Release connections; the target may not be used afterwards."""

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
