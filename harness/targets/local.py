"""The local target: this machine, with a folder on its own disk playing the device's file system.

Remote paths are plain local paths (the pipeline builds them below ``workdir``). Copies are atomic
(a temp file next to the destination, then a rename) so an interrupted push never leaves a partial
file under a content-addressed name. Processes start only through
:func:`harness.targets.process.run_command`, never through a shell.

>>> target = LocalTarget(Path("/tmp/qskew-device"))
>>> target.run([target.python, "-c", "print(6*7)"], timeout_s=30).stdout.strip()
'42'
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import CommandFailed, TargetError
from harness.fsutil import atomic_write
from harness.targets.base import RemoteStat, Target
from harness.targets.process import CommandResult, ServedProcess, run_command

HASH_CHUNK_BYTES = 1 << 20  # read files in 1 MiB pieces: constant memory for any model or test set
PROBE_TIMEOUT_S = 30.0      # asking another interpreter its version; a cold start can take seconds


class LocalTarget(Target):
    """A target on this machine: ``workdir`` on the local disk, ``python`` runs the runner.

    >>> LocalTarget(Path("/tmp/dev"), name="local").properties()["name"]
    'local'
    """

    def __init__(self, workdir: Path, python: str = sys.executable, name: str = "local"):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.python = python
        self.name = name
        self._properties: dict[str, Any] | None = None
        self._served: dict[tuple[str, ...], ServedProcess] = {}

    def push(self, local: Path, remote: str) -> None:
        self._copy(Path(local), Path(remote), "push")

    def pull(self, remote: str, local: Path) -> None:
        self._copy(Path(remote), Path(local), "pull")

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        return run_command(argv, timeout_s=timeout_s, cwd=cwd, device=self.name)

    def serve(self, argv: Sequence[str]) -> ServedProcess:
        key = tuple(str(a) for a in argv)
        served = self._served.get(key)
        if served is None or not served.alive:
            served = self._served[key] = ServedProcess(key, device=self.name)
        return served

    def close(self) -> None:
        """End the served runners (each exits at the end of its input)."""
        served, self._served = list(self._served.values()), {}
        for proc in served:
            proc.close()

    def stat(self, remote: str) -> RemoteStat | None:
        try:
            st = os.stat(remote)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"cannot stat {remote}: {exc}", self.name) from exc
        return RemoteStat(size_bytes=st.st_size, mode=st.st_mode, mtime=int(st.st_mtime),
                          mtime_ns=st.st_mtime_ns)

    def sha256(self, remote: str) -> str | None:
        digest = hashlib.sha256()
        try:
            with open(remote, "rb") as f:
                for block in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
                    digest.update(block)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"cannot read {remote}: {exc}", self.name) from exc
        return digest.hexdigest()

    def mkdirs(self, remote: str) -> None:
        try:
            os.makedirs(remote, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"cannot create folder {remote}: {exc}", self.name) from exc

    def properties(self) -> Mapping[str, Any]:
        """Host name, OS, machine and the runner interpreter's Python version (asked once)."""
        if self._properties is None:
            self._properties = {
                "name": self.name, "kind": "local", "hostname": socket.gethostname(),
                "platform": platform.platform(), "machine": platform.machine(),
                "python": self.python, "python_version": self._python_version(), "cpu_model": _cpu_model(),
            }
        return dict(self._properties)

    def _python_version(self) -> str:
        if os.path.abspath(self.python) == os.path.abspath(sys.executable):
            return platform.python_version()
        argv = [self.python, "-c", "import platform; print(platform.python_version())"]
        result = self.run(argv, timeout_s=PROBE_TIMEOUT_S)
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, result.stdout + result.stderr, self.name)
        return result.stdout.strip()

    def _copy(self, src: Path, dst: Path, verb: str) -> None:
        """Copy ``src`` to ``dst`` atomically, with src's mode (as cp and adb push do)."""
        def copy(tmp: Path) -> None:
            with open(tmp, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, HASH_CHUNK_BYTES)

        fail = f"{verb} {src} -> {dst} failed"
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            mode = os.stat(src).st_mode & 0o7777
        except OSError as exc:
            raise TargetError(f"{fail}: {exc}", self.name) from exc
        atomic_write(dst, copy, mode=mode, error=lambda msg: TargetError(f"{fail}: {msg}", self.name))


def _cpu_model() -> str:
    """The host CPU's name from /proc/cpuinfo ("model name"), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor()
