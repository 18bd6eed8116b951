"""A phone or board reached over ADB (TCP ``host:port`` or USB serial), built on ``adb-shell`` 0.4.4.

``AdbTarget`` is the ``Target`` of an ADB device. It puts together three parts, each with its own
module (``devices-and-adb.md`` section 4 says what they add to the stock adb-shell client):

* ``adb_session.AdbSession``: the connection (``adb_link``'s transport, the device's banner and
  payload), reconnects with backoff, one shell command with its exit code (shell protocol v2, or a
  marker on a legacy device), every argument quoted, and the one place where adb-shell and socket
  exceptions become ``harness.errors`` naming the device and the command or path;
* ``adb_files.AdbFiles``: push through a temp name and ``mv``, pull into a temp file and rename,
  stat, the device's own sha256, ``mkdir -p``;
* ``adb_jobs.DetachedJobs``: long jobs (``run_detached``) started in their own session, polled with
  short commands across dropped links, killed at their deadline, attached to if still running.

>>> with AdbTarget("pixel-7", address="192.168.1.40:5555") as phone:   # doctest: +SKIP
...     phone.run(["getprop", "ro.product.model"], timeout_s=10).stdout.strip()
'Pixel 7'
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from adb_shell.adb_device import AdbDevice

from harness.targets.adb_files import AdbFiles
from harness.targets.adb_jobs import DetachedJobs
from harness.targets.adb_link import LinkLimits
from harness.targets.adb_served import AdbShellStream, ServedShell, served_command
from harness.targets.adb_session import (AUTH_TIMEOUT_S, COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S,
                                         RECONNECT_ATTEMPTS, AdbSession)
from harness.errors import TargetError
from harness.targets.base import RemoteStat, Target
from harness.targets.process import CommandResult

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = "/data/local/tmp/qskew"  # world-writable and exec-allowed on stock Android
PROPS_SCRIPT = 'for p in "$@"; do printf "%s=%s\\n" "$p" "$(getprop "$p")"; done'
GETPROP_KEYS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
                "abi": "ro.product.cpu.abi", "os_release": "ro.build.version.release",
                "sdk": "ro.build.version.sdk", "serialno": "ro.serialno", "cpu_model": "ro.soc.model"}


class SessionTarget(Target):
    """The ``Target`` of a device behind a session: commands, files and detached jobs delegate to it.

    ``session`` runs one shell command (``run``, ``check``, ``run_retrying``) and names the link
    (``transport``, ``where``, ``features``, ``max_payload``); ``files`` (``adb_files.AdbFiles`` or a
    subclass) moves files; ``jobs`` (``adb_jobs.DetachedJobs``) runs the device runner detached.
    ``AdbTarget`` builds these from adb-shell, ``adb_server.ServerTarget`` from the adb server.
    """

    def __init__(self, name: str, session, files: AdbFiles, *, workdir: str, python: str):
        self.name = name
        self.workdir = workdir
        self.python = python
        self._session = session
        self._files = files
        self._jobs = DetachedJobs(files, python)
        self._properties: dict[str, Any] | None = None
        self._served: dict[tuple[str, ...], ServedShell] = {}

    kind = "adb"  # the "kind" fact of properties()

    def close(self) -> None:
        """End the served processes (each exits at the end of its input), then the connection."""
        served, self._served = list(self._served.values()), {}
        for proc in served:
            proc.close()
        self._session.close()

    def serve(self, argv: Sequence[str]) -> ServedShell | None:
        """``argv`` kept up for this session on one shell-v2 stream (``adb_served``); None on a
        device without shell protocol v2 (one process per job then). A dead one is replaced."""
        key = tuple(str(a) for a in argv)
        served = self._served.get(key)
        if served is None or not served.alive:
            if "shell_v2" not in self._session.features:
                return None
            try:
                stream = self._open_stream(served_command(key))
            except TargetError as exc:  # the device refused the stream: a runner per job will say why
                log.info("[%s] no served runner: %s", self.name, exc)
                return None
            served = self._served[key] = ServedShell(stream, key, self.name, self._kill,
                                                          self._session.limits.output_bytes)
        return served

    def _open_stream(self, command: str):
        """A ``shell,v2,raw:`` stream running ``command`` (``adb_served.ByteStream``)."""
        return AdbShellStream(self._session, command)

    def _kill(self, pid: int) -> None:
        self._session.run_retrying(["sh", "-c", 'kill -9 "$1" 2>/dev/null; true', "qskew-kill", str(pid)],
                                   f"killing served process {pid}")

    # --- commands and files ---------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` (every argument quoted) and return its exit code and output.

        stdout and stderr are separate on shell-v2 devices; a legacy device merges them into stdout.
        """
        return self._session.run(argv, timeout_s=timeout_s, cwd=cwd)

    def run_detached(self, argv: Sequence[str], job_dir: str, timeout_s: float,
                     cwd: str | None = None,
                     watch: Callable[[str], None] | None = None) -> CommandResult:
        """Run ``argv`` in its own session on the device and poll it until it exits (``adb_jobs``)."""
        return self._jobs.run(argv, job_dir, timeout_s, cwd=cwd, watch=watch)

    def push(self, local: Path, remote: str) -> None:
        """Push through a temp name next to ``remote`` and ``mv`` it into place."""
        self._files.push(local, remote)

    def pull(self, remote: str, local: Path) -> None:
        """Pull into a temp file next to ``local`` and rename it into place."""
        self._files.pull(remote, local)

    def stat(self, remote: str) -> RemoteStat | None:
        return self._files.stat(remote)

    def sha256(self, remote: str) -> str | None:
        """The device's own hash of ``remote`` (one round trip; a failure asks stat why)."""
        return self._files.sha256(remote)

    def mkdirs(self, remote: str) -> None:
        self._files.mkdirs(remote)

    # --- facts ----------------------------------------------------------------------------------

    def properties(self) -> Mapping[str, Any]:
        """Model, ABI, OS release/SDK, serial (getprop), banner features and the Python version."""
        if self._properties is None:
            session = self._session
            props: dict[str, Any] = {
                "name": self.name, "kind": self.kind, "transport": session.transport,
                "address": session.where, "features": sorted(session.features),
                "max_payload_bytes": session.max_payload, "python": self.python, "workdir": self.workdir}
            keys = list(GETPROP_KEYS.values())
            result = self.run(["sh", "-c", PROPS_SCRIPT, "qskew-props", *keys], timeout_s=COMMAND_TIMEOUT_S)
            found = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
            props.update({field: found.get(key) or None for field, key in GETPROP_KEYS.items()})
            props.update(self._python_version())
            self._properties = props
        return dict(self._properties)

    def _python_version(self) -> dict[str, Any]:
        argv = [self.python, "-c", "import platform; print(platform.python_version())"]
        result = self.run(argv, timeout_s=COMMAND_TIMEOUT_S)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-300:]
            return {"python_version": None, "python_error": f"exit {result.returncode}: {output}"}
        return {"python_version": result.stdout.strip()}


class AdbTarget(SessionTarget):
    """A device over ADB: ``address="host:port"`` (TCP) or ``serial=...`` (USB, needs adb-shell[usb]).

    Connects lazily on first use (``connect()`` forces it); ``close()`` drops the connection.
    ``max_payload`` caps the payload below what the device offers (None: the device's maximum);
    ``limits`` bounds what the device may make qskew hold or write (captured output, pulled files,
    sync records; ``adb_link.LinkLimits``). Calls are serialized by a lock: one job at a time per device, as the scheduler runs them.
    """

    def __init__(self, name: str, *, address: str | None = None, serial: str | None = None,
                 workdir: str = DEFAULT_WORKDIR, python: str = "python3", key_path: Path | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, auth_timeout_s: float = AUTH_TIMEOUT_S,
                 max_payload: int | None = None, nodelay: bool = True,
                 reconnect_attempts: int = RECONNECT_ATTEMPTS, limits: LinkLimits = LinkLimits()):
        session = AdbSession(name, address=address, serial=serial, key_path=key_path,
                             connect_timeout_s=connect_timeout_s, auth_timeout_s=auth_timeout_s,
                             max_payload=max_payload, nodelay=nodelay,
                             reconnect_attempts=reconnect_attempts, limits=limits)
        super().__init__(name, session, AdbFiles(session, python), workdir=workdir, python=python)

    # --- connection -----------------------------------------------------------------------------

    @property
    def features(self) -> frozenset[str]:
        """Features the device announced in its banner (connects if needed)."""
        return self._session.features

    @property
    def max_payload(self) -> int:
        """Largest ADB payload used on this connection (the device's, capped by ``max_payload``)."""
        return self._session.max_payload

    @property
    def reconnects(self) -> int:
        """How many times a dropped link was re-established."""
        return self._session.reconnects

    def connect(self) -> AdbDevice:
        """The connected adb-shell device, connecting (or reconnecting after a drop) if needed."""
        return self._session.connect()

