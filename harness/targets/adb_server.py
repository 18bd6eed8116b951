"""A device reached through a running adb server (``reach = "adb-server"``), with ``adbutils``.

Labs run an ``adb`` server on every host: it owns the USB phones, and a second USB client
(adb-shell's own transport) collides with it (adb_shell issue 213). ``ServerTarget`` talks to the
server instead (``host:transport:<serial>``, sync, shell v2) and reuses the rest of the ADB target:
``adb.SessionTarget`` (properties), ``adb_files.AdbFiles`` (temp-name pushes, the hash tool, mkdir)
and ``adb_jobs.DetachedJobs`` (the device runner started detached and polled). What differs lives
here: ``ServerSession`` runs one shell command through the server — always with shell protocol v2
(``shell2(..., v2=True)``: adbutils' default v1 appends its own marker and cannot tell the exit code
of a command that ``exit``s), or qskew's own marker on a v1-only device — and ``ServerFiles`` moves
files with the server's sync service. Errors name the device, the serial and the server. A
command's output is read as it comes and stops at ``LinkLimits.output_bytes`` (``PeerError``), as
on qskew's own ADB link: a device cannot make qskew hold more than that.

The server is never started by qskew: adbutils would run ``adb start-server`` on the default port
when it cannot connect, so ``server_client`` checks the server answers first.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import adbutils
from adbutils.errors import AdbError, AdbTimeout

from harness.errors import CommandFailed, CommandTimeout, ConfigError, TargetError
from harness.fsutil import atomic_write
from harness.targets.adb import DEFAULT_WORKDIR, SessionTarget
from harness.targets.adb_files import MOVE_SCRIPT, AdbFiles
from harness.targets.adb_link import LinkLimits, PeerError
from harness.targets.adb_served import ServerStream
from harness.targets.adb_session import (COMMAND_TIMEOUT_S, RECONNECT_ATTEMPTS, RECONNECT_BACKOFF_S, AdbSession, LinkLost,
                                         bare, checked_argv, decode, shell_command, shown)
from harness.targets.base import RemoteStat
from harness.targets.process import CommandResult

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SERVER = "127.0.0.1:5037"     # where `adb start-server` listens unless told otherwise
SERVER_PROBE_TIMEOUT_S = 3.0          # the server is on this host or the lab's LAN: it answers at once
LINK_ERRORS = (AdbError, OSError)     # the server or the device's transport went away (AdbTimeout first)
READ_CHUNK_BYTES = 64 * 1024          # a shell v1 stream is read this much at a time (then counted)
SHELL_V2_STDOUT, SHELL_V2_STDERR, SHELL_V2_EXIT = 1, 2, 3  # shell v2 packet ids (adb's shell_protocol.h)


def parse_server(server: str, where: str = "adb server") -> tuple[str, int]:
    """``host:port`` of an adb server (``""``: the default, 127.0.0.1:5037).

    >>> parse_server("lab-host:5038")
    ('lab-host', 5038)
    """
    host, sep, port = (server or DEFAULT_SERVER).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: server {server!r} is not host:port (e.g. {DEFAULT_SERVER})")
    return host.strip("[]"), int(port)


def server_client(server: str) -> adbutils.AdbClient:
    """An adbutils client of the adb server at ``server``; TargetError if nothing answers there."""
    host, port = parse_server(server)
    try:
        socket.create_connection((host, port), timeout=SERVER_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise TargetError(f"no adb server answers at {host}:{port} ({exc}); start one with "
                          f"`adb -P {port} start-server`, or give --server host:port", f"{host}:{port}") from exc
    return adbutils.AdbClient(host=host, port=port)


class ServerTimeout(TargetError):
    """The server or the device did not answer within the timeout."""


@dataclass(frozen=True)
class ServerDevice:
    """One device as the adb server lists it: its serial and state (device, unauthorized, offline...)."""

    serial: str
    state: str

    @property
    def advice(self) -> str:
        """What to do about a device that is not usable ("" for a ready one)."""
        if self.state == "device":
            return ""
        if self.state == "unauthorized":
            return ("unauthorized: accept the 'Allow USB debugging' prompt on the device (or add this host's "
                    "adb key, ~/.android/adbkey.pub, to its trusted keys), then list again")
        if self.state == "offline":
            return (f"offline: reconnect it (`adb disconnect {self.serial}` then `adb connect {self.serial}`, "
                    "or replug the cable); restart adbd on the device if it stays offline")
        return f"{self.state}: not ready for commands; wait for it to boot, or replug it"


def server_devices(client: adbutils.AdbClient) -> list[ServerDevice]:
    """Every device the server knows, in any state."""
    return [ServerDevice(info.serial, info.state) for info in client.list()]


class ServerSession:
    """Shell commands on device ``serial`` through the adb server ``server`` (the session of a
    ``ServerTarget``; the same methods as ``adb_session.AdbSession`` that files and jobs use)."""

    transport = "adb-server"

    def __init__(self, name: str, serial: str, server: str = "",
                 reconnect_attempts: int = RECONNECT_ATTEMPTS, limits: LinkLimits = LinkLimits()):
        self.name = name
        self.serial = serial
        self.server = "%s:%d" % parse_server(server, f"device {name!r}")
        self.limits = limits
        self._reconnect_attempts = reconnect_attempts
        self._device: adbutils.AdbDevice | None = None
        self._features: frozenset[str] | None = None

    @property
    def where(self) -> str:
        return f"{self.serial} via the adb server at {self.server}"

    @property
    def linked(self) -> bool:
        return self._device is not None

    @property
    def max_payload(self) -> None:
        """The server chooses the payload of its own link to the device: not known here."""
        return None

    @property
    def features(self) -> frozenset[str]:
        if self._features is None:
            text = self.call("features", lambda d: d.get_features(), idempotent=True)
            self._features = frozenset(f for f in text.strip().split(",") if f)
        return self._features

    def device(self) -> adbutils.AdbDevice:
        """The adbutils device; TargetError with advice when the server does not list it as ready."""
        if self._device is None:
            client = server_client(self.server)
            listed = {d.serial: d for d in server_devices(client)}
            found = listed.get(self.serial)
            if found is None:
                raise TargetError(f"the adb server at {self.server} does not list {self.serial!r} (it lists: "
                                  f"{', '.join(listed) or 'nothing'}); `adb connect` it or plug it in", self.name)
            if found.advice:
                raise TargetError(f"{self.serial} via {self.server} is {found.advice}", self.name)
            self._device = client.device(serial=self.serial)
        return self._device

    def close(self) -> None:
        self._device = None  # adbutils opens one server connection per request: nothing stays open

    def drop_link(self) -> None:
        self._device = None

    def call(self, what: str, op: Callable[[adbutils.AdbDevice], T], *, idempotent: bool) -> T:
        """Run ``op`` on the device; an idempotent op is retried after a lost link (with backoff)."""
        for attempt in range(self._reconnect_attempts + 1):
            device = self.device()
            try:
                return op(device)
            except (AdbTimeout, TimeoutError) as exc:
                self.drop_link()
                raise ServerTimeout(f"{what}: {self.where} timed out: {bare(exc)}", self.name) from exc
            except LINK_ERRORS as exc:
                self.drop_link()
                if not idempotent or attempt == self._reconnect_attempts:
                    raise LinkLost(f"{what}: {self.where} failed: {bare(exc)}", self.name) from exc
                log.info("[%s] %s: %s; asking the server again", self.name, what, bare(exc))
                time.sleep(RECONNECT_BACKOFF_S * 2 ** attempt)
        raise AssertionError("unreachable")

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` (every argument quoted): exit code, stdout and stderr (merged on a v1 device).

        A link that breaks under the command raises ``LinkLost`` (it may or may not have run).
        """
        argv = checked_argv(argv, self.name)
        start = time.perf_counter()
        try:
            code, out, err = self._run_once(shell_command(argv, cwd), timeout_s, f"command {shown(argv)}",
                                            idempotent=False)
        except ServerTimeout as exc:
            raise CommandTimeout(list(argv), timeout_s, "", self.name) from exc
        return CommandResult(tuple(argv), code, decode(out), decode(err), time.perf_counter() - start)

    check = AdbSession.check  # run, then CommandFailed on a non-zero exit (the same rule)

    def run_retrying(self, argv: Sequence[str], what: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """A command safe to repeat, retried after a lost link; CommandFailed on a non-zero exit."""
        argv = checked_argv(argv, self.name)
        code, out, err = self._run_once(shell_command(argv), timeout_s, what, idempotent=True)
        if code != 0:
            raise CommandFailed(list(argv), code, decode(out + err), self.name)
        return decode(out)

    def _run_once(self, command: str, timeout_s: float, what: str, *, idempotent: bool):
        """(exit code, stdout bytes, stderr bytes): shell v2, or qskew's marker on a v1-only device.

        At most ``limits.output_bytes`` of output are read (PeerError beyond)."""
        limit = self.limits.output_bytes
        if "shell_v2" in self.features:
            return self.call(what, lambda d: _shell_v2(d, command, timeout_s, limit, what, self.name),
                             idempotent=idempotent)
        marker = f"__QSKEW_RC_{secrets.token_hex(8)}="
        data = self.call(what, lambda d: _shell_v1(d, f'{command}; echo "{marker}$?"', timeout_s, limit, what,
                                                   self.name), idempotent=idempotent)
        at = data.rfind(marker.encode())
        match = re.match(rb"\s*(\d+)", data[at + len(marker):]) if at >= 0 else None
        if match is None:
            raise TargetError(f"{what}: the shell output ended without the exit-status marker", self.name)
        return int(match.group(1)), data[:at], b""


def _over(what: str, limit: int, name: str) -> PeerError:
    return PeerError(f"{what}: the output exceeds the {limit}-byte limit (LinkLimits.output_bytes)", name)


def _shell_v2(device: adbutils.AdbDevice, command: str, timeout_s: float, limit: int, what: str, name: str):
    """A shell v2 command through the server, its packets read one by one (adbutils' ``shell2``
    holds the whole output): (exit code, stdout, stderr), PeerError past ``limit`` bytes."""
    conn = device.open_transport(timeout=timeout_s)
    try:
        conn.send_command(f"shell,v2:{command}")
        conn.check_okay()
        out, err, exit_code = bytearray(), bytearray(), 255
        while True:
            header = conn.read_exact(5)
            kind, length = header[0], int.from_bytes(header[1:5], "little")
            if len(out) + len(err) + length > limit:
                raise _over(what, limit, name)
            data = conn.read_exact(length) if length else b""
            if kind == SHELL_V2_EXIT:
                exit_code = data[0] if data else exit_code
                return exit_code, bytes(out), bytes(err)
            (out if kind == SHELL_V2_STDOUT else err if kind == SHELL_V2_STDERR else bytearray()).extend(data)
    finally:
        conn.close()


def _shell_v1(device: adbutils.AdbDevice, command: str, timeout_s: float, limit: int, what: str, name: str) -> bytes:
    """A shell v1 command's output until the device closes the stream, PeerError past ``limit`` bytes."""
    conn = device.open_shell(command)
    try:
        conn.conn.settimeout(timeout_s)
        out = bytearray()
        while chunk := conn.conn.recv(READ_CHUNK_BYTES):
            out += chunk
            if len(out) > limit:
                raise _over(what, limit, name)
        return bytes(out)
    finally:
        conn.close()


class ServerFiles(AdbFiles):
    """``AdbFiles`` whose transfers use the adb server's sync service (hashing and mkdir are shared)."""

    session: ServerSession

    def push(self, local: Path, remote: str) -> None:
        """Push through a temp name next to ``remote`` and ``mv`` it into place."""
        local, what, mode, tmp = self.staged_push(local, remote)
        try:
            self.session.call(what, lambda d: d.sync.push(local, tmp, mode=mode), idempotent=True)
            self.session.run_retrying(["sh", "-c", MOVE_SCRIPT, "qskew-mv", tmp, remote], f"mv {tmp} {remote}")
        except TargetError:
            self._discard(tmp)
            raise

    def pull(self, remote: str, local: Path) -> None:
        """Pull into a temp file next to ``local`` and rename it into place (at most ``pull_bytes``)."""
        local = Path(local)
        what = f"pull {remote} -> {local}"

        def pull_into(tmp: Path) -> None:
            self.session.call(what, lambda d: self._copy(d, remote, tmp, what), idempotent=True)

        try:
            local.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"{what}: cannot write local file: {exc}", self.name) from exc
        atomic_write(local, pull_into, error=lambda msg: TargetError(f"{what}: {msg}", self.name))

    def _copy(self, device: adbutils.AdbDevice, remote: str, tmp: Path, what: str) -> None:
        if self.stat(remote) is None:
            raise TargetError(f"{what}: no such file on the device", self.name)
        limit, size = self.session.limits.pull_bytes, 0
        with open(tmp, "wb") as sink:
            for chunk in device.sync.iter_content(remote):
                size += len(chunk)
                if size > limit:
                    raise TargetError(f"{what}: larger than the {limit}-byte limit (LinkLimits.pull_bytes)",
                                      self.name)
                sink.write(chunk)

    def read_small(self, remote: str, what: str) -> bytes:
        """A small remote file's bytes (b"" if it does not exist); ``what`` says why."""
        if self.stat(remote) is None:
            return b""
        data = self.session.call(f"pull {remote} ({what})", lambda d: d.sync.read_bytes(remote), idempotent=True)
        if len(data) > self.session.limits.output_bytes:
            raise TargetError(f"pull {remote} ({what}): over the {self.session.limits.output_bytes}-byte "
                              "limit (LinkLimits.output_bytes)", self.name)
        return data

    def stat(self, remote: str) -> RemoteStat | None:
        info = self.session.call(f"stat {remote}", lambda d: d.sync.stat(remote), idempotent=True)
        if info.mode == 0:  # sync STAT v1 answers all zeros for a missing path
            return None
        mtime = int(info.mtime.timestamp()) if info.mtime is not None else 0
        return RemoteStat(size_bytes=info.size, mode=info.mode, mtime=mtime)


class ServerTarget(SessionTarget):
    """A device behind a running adb server: ``serial`` as ``adb devices`` lists it, ``server``
    ``host:port`` (default 127.0.0.1:5037). Commands use shell v2, files the server's sync."""

    kind = "adb-server"

    def __init__(self, name: str, *, serial: str, server: str = "", workdir: str = DEFAULT_WORKDIR,
                 python: str = "python3", limits: LinkLimits = LinkLimits()):
        session = ServerSession(name, serial, server, limits=limits)
        super().__init__(name, session, ServerFiles(session, python), workdir=workdir, python=python)

    def _open_stream(self, command: str) -> ServerStream:
        return ServerStream(self._session, command)

