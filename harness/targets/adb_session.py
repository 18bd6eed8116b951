"""The ADB connection of one device: connect, reconnect, run one command, translate errors once.

``AdbSession`` owns the adb-shell ``AdbDevice`` of one phone or board (``devices-and-adb.md``
section 4) and everything that touches it goes through ``call`` (an operation on the connected
device, retried after a reconnect when it is safe to repeat) or ``run`` (one shell command):

* The link of ``harness.targets.adb_link``: ``TCP_NODELAY``, complete writes, prompt EOF, the
  device's largest payload, and the device's CNXN banner, so the features are known without
  probing: exit codes come from shell protocol v2 (``shell,v2,raw:``) when the device lists
  ``shell_v2``, else from a marker line the exit status is printed behind (``; echo "<marker>$?"``).
  A v1-only device is never sent a v2 OPEN (it would hang until the read timeout).
* Every argument of a command is quoted with ``shlex.quote`` (``shell_command``), so names with
  spaces, quotes, ``;``, ``$()`` or newlines are data, never code.
* A dropped link is reconnected (a few attempts with backoff); adb-shell and socket exceptions
  become ``harness.errors`` (TargetError, CommandFailed, CommandTimeout) here, each naming the
  device and the command or path.
* The device's numbers are never trusted (``adb_link.LinkLimits``): a command's captured output
  stops at ``limits.output_bytes``; a device that breaks the protocol or a limit (``PeerError``)
  loses its link and the operation is not retried.

File transfer (``adb_files``) and detached jobs (``adb_jobs``) are built on a session;
``adb.AdbTarget`` puts the three together behind the ``Target`` interface.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice

from harness.errors import CommandFailed, CommandTimeout, ConfigError, TargetError
from harness.targets import adb_keys
from harness.targets.adb_link import (LINK_ERRORS, TIMEOUT_ERRORS, DeviceBanner, LinkLimits, LocalFileError,
                                      NoDelayTcpTransport, PeerError, QskewAdbDevice, QskewIOManager)
from harness.targets.adb_wire import parse_shell_v2
from harness.targets.process import CommandResult

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0       # TCP connect + CNXN on a phone over Wi-Fi
AUTH_TIMEOUT_S = 60.0          # after our public key is sent: time for a person to tap "Allow"
COMMAND_TIMEOUT_S = 120.0      # short commands: mkdir, mv, stat, a big test set's sha256 on a slow board
RECONNECT_ATTEMPTS = 5         # a Wi-Fi blip or adbd restart (waits 0.25+0.5+1+2 s); longer = gone
RECONNECT_BACKOFF_S = 0.25     # first wait before reconnecting; doubles each attempt
SHELL_V2_SERVICE = b"shell,v2,raw"


class LinkLost(TargetError):
    """The connection broke under a command that may or may not have run on the device."""


class AdbSession:
    """The connection to one device over ADB: ``address="host:port"`` (TCP) or ``serial=...`` (USB).

    Connects lazily on first use (``connect()`` forces it); ``close()`` drops the connection.
    ``max_payload`` caps the payload below what the device offers (None: the device's maximum);
    ``limits`` bounds what the device may make qskew hold or write.
    Calls are serialized by a lock: one job at a time per device, as the scheduler runs them.
    """

    def __init__(self, name: str, *, address: str | None = None, serial: str | None = None,
                 key_path: Path | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 auth_timeout_s: float = AUTH_TIMEOUT_S, max_payload: int | None = None,
                 nodelay: bool = True, reconnect_attempts: int = RECONNECT_ATTEMPTS,
                 limits: LinkLimits = LinkLimits()):
        if (address is None) == (serial is None):
            raise ConfigError(f"device {name!r}: give exactly one of address (host:port) or serial (USB)")
        self.name = name
        self._address = _parse_address(name, address) if address is not None else None
        self._serial = serial
        self.where = address if address is not None else f"usb:{serial}"
        self._key_path = key_path
        self._connect_timeout_s = connect_timeout_s
        self._auth_timeout_s = auth_timeout_s
        self._max_payload = max_payload
        self._nodelay = nodelay
        self._reconnect_attempts = max(1, int(reconnect_attempts))
        self.limits = limits
        self._device: AdbDevice | None = None
        self._banner: DeviceBanner | None = None
        self._was_connected = False
        self._lock = threading.RLock()
        self._signer = None
        self._key_file: Path | None = None
        self.reconnects = 0  # how many times a dropped link was re-established (logged per device)

    @property
    def transport(self) -> str:
        """"tcp" or "usb"."""
        return "tcp" if self._address else "usb"

    @property
    def features(self) -> frozenset[str]:
        """Features the device announced in its banner (connects if needed)."""
        self.connect()
        return self._banner.features

    @property
    def max_payload(self) -> int:
        """Largest ADB payload used on this connection (the device's, capped by ``max_payload``)."""
        return self.connect()._maxdata

    @property
    def linked(self) -> bool:
        """Whether a connection is up (or was, until a drop was noticed); no connect attempt."""
        return self._device is not None

    def connect(self) -> AdbDevice:
        """The connected adb-shell device, connecting (or reconnecting after a drop) if needed."""
        return self._connected("connect")

    def close(self) -> None:
        with self._lock:
            self.drop_link()

    def drop_link(self) -> None:
        """Forget the connection (the next call connects anew), closing it quietly."""
        if self._device is not None:
            try:
                self._device.close()
            except Exception:  # closing a broken socket may raise anything; it is gone either way
                pass
        self._device = None

    def call(self, what: str, op: Callable[[AdbDevice], T], *, idempotent: bool) -> T:
        """Run ``op`` on the connected device, translating link errors once.

        An idempotent op (stat, pull, a poll...) is retried after a reconnect; any other op raises
        TargetError naming ``what`` when the link breaks under it.
        """
        with self._lock:
            for attempt in range(self._reconnect_attempts + 1):
                device = self._connected(what)
                try:
                    return op(device)
                except LocalFileError as exc:
                    raise TargetError(f"{what}: local file error: {exc}", self.name) from exc
                except PeerError:
                    self.drop_link()  # the stream is out of step; a device that lies is not retried
                    raise
                except LINK_ERRORS as exc:
                    self.drop_link()
                    if not idempotent or attempt == self._reconnect_attempts:
                        raise TargetError(f"{what}: connection to {self.where} lost: {bare(exc)}",
                                          self.name) from exc
                    log.info("[%s] %s: link lost (%s); reconnecting", self.name, what, bare(exc))
            raise AssertionError("unreachable")

    # --- commands -------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` (every argument quoted) and return its exit code and output.

        stdout and stderr are separate on shell-v2 devices; a legacy device merges them into stdout.
        A link that breaks under the command raises ``LinkLost`` (it may or may not have run).
        """
        argv = checked_argv(argv, self.name)
        command = shell_command(argv, cwd)
        what = f"command {shown(argv)}"
        start = time.perf_counter()
        with self._lock:
            device = self._connected(what)
            try:
                code, out, err = self._run_once(device, command, timeout_s, what)
            except TIMEOUT_ERRORS as exc:
                self.drop_link()  # abandon the stream; the next call starts on a clean connection
                raise CommandTimeout(list(argv), timeout_s, "", self.name) from exc
            except PeerError:
                self.drop_link()
                raise
            except LINK_ERRORS as exc:
                self.drop_link()
                raise LinkLost(f"{what}: connection to {self.where} lost: {bare(exc)}", self.name) from exc
        return CommandResult(tuple(argv), code, decode(out), decode(err), time.perf_counter() - start)

    def check(self, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S,
              cwd: str | None = None) -> CommandResult:
        """``run`` that raises CommandFailed on a non-zero exit."""
        result = self.run(argv, timeout_s=timeout_s, cwd=cwd)
        if result.returncode != 0:
            raise CommandFailed(list(argv), result.returncode, result.stdout + result.stderr, self.name)
        return result

    def run_retrying(self, argv: Sequence[str], what: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """A command safe to repeat (read-only, or idempotent like ``mkdir -p``), retried after a
        reconnect; raises CommandFailed on a non-zero exit, returns its stdout."""
        argv = checked_argv(argv, self.name)

        def op(device: AdbDevice) -> str:
            code, out, err = self._run_once(device, shell_command(argv), timeout_s, what)
            if code != 0:
                raise CommandFailed(list(argv), code, decode(out + err), self.name)
            return decode(out)
        return self.call(what, op, idempotent=True)

    def _run_once(self, device: AdbDevice, command: str, timeout_s: float, what: str):
        """(exit code, stdout bytes, stderr bytes) of one shell command, by v2 or by marker."""
        if "shell_v2" in self._banner.features:
            return self._run_v2(device, command, timeout_s, what)
        return self._run_marker(device, command, timeout_s, what)

    def _run_v2(self, device: AdbDevice, command: str, timeout_s: float, what: str):
        data = self._collect(device, SHELL_V2_SERVICE, self._payload(device, SHELL_V2_SERVICE, command, what),
                             timeout_s, what)
        out, err, code = parse_shell_v2(data)
        if code is None:
            raise TargetError(f"{what}: the shell stream ended without an exit status", self.name)
        return code, out, err

    def _run_marker(self, device: AdbDevice, command: str, timeout_s: float, what: str):
        marker = f"__QSKEW_RC_{secrets.token_hex(8)}="
        full = f'{command}; echo "{marker}$?"'
        data = self._collect(device, b"shell", self._payload(device, b"shell", full, what), timeout_s, what)
        at = data.rfind(marker.encode())
        match = re.match(rb"\s*(\d+)", data[at + len(marker):]) if at >= 0 else None
        if match is None:
            raise TargetError(f"{what}: the shell output ended without the exit-status marker",
                              self.name)
        return int(match.group(1)), data[:at], b""

    def _collect(self, device: AdbDevice, service: bytes, payload: bytes, timeout_s: float, what: str) -> bytes:
        """A service's whole output (adb-shell's ``_service``), at most ``limits.output_bytes``."""
        out, limit = bytearray(), self.limits.output_bytes
        for data in device._streaming_command(service, payload, None, timeout_s, timeout_s):
            out += data
            if len(out) > limit:
                raise PeerError(f"{what}: the output exceeds the {limit}-byte limit (LinkLimits.output_bytes)",
                                self.name)
        return bytes(out)

    def _payload(self, device: AdbDevice, service: bytes, command: str, what: str) -> bytes:
        payload = command.encode("utf-8")
        if len(service) + 2 + len(payload) > device._maxdata:
            raise TargetError(f"{what}: command is {len(payload)} bytes, more than the device's "
                              f"{device._maxdata}-byte payload", self.name)
        return payload

    # --- connecting -----------------------------------------------------------------------------

    def _connected(self, what: str) -> AdbDevice:
        """``connect()`` for an operation: errors name ``what`` (the command or path)."""
        with self._lock:
            if self._device is not None and self._device.available and self._link_open():
                return self._device
            if not self._was_connected:
                return self._connect_once(what)
            return self._reconnect(what)

    def _link_open(self) -> bool:
        """Whether the connection still stands (a TCP peer that closed it is seen before use)."""
        transport = self._device._io_manager._transport
        return transport.is_open() if isinstance(transport, NoDelayTcpTransport) else True

    def _reconnect(self, what: str) -> AdbDevice:
        """Reconnect after a drop, with backoff; TargetError naming ``what`` if the device is gone."""
        delay, last = RECONNECT_BACKOFF_S, None
        for attempt in range(1, self._reconnect_attempts + 1):
            try:
                device = self._connect_once(what)
                self.reconnects += 1
                log.info("[%s] reconnected to %s (attempt %d)", self.name, self.where, attempt)
                return device
            except TargetError as exc:
                last = exc
                log.info("[%s] reconnect %d/%d to %s failed: %s", self.name, attempt,
                         self._reconnect_attempts, self.where, exc)
                if attempt < self._reconnect_attempts:
                    time.sleep(delay)
                    delay *= 2
        raise TargetError(f"device {self.where} is gone ({what}): {self._reconnect_attempts} reconnect "
                          f"attempts failed: {getattr(last, 'reason', last)}", self.name) from last

    def _connect_once(self, what: str) -> AdbDevice:
        self.drop_link()
        if self._signer is None:
            self._signer, self._key_file = adb_keys.load_signer(self._key_path, self.name)
        transport = self._make_transport()
        device = QskewAdbDevice(transport, banner="qskew", device=self.name, limits=self.limits)
        manager = QskewIOManager(transport, device=self.name)
        device._io_manager = manager  # adb-shell builds its own; ours keeps the banner, sums fast
        try:
            device.connect(rsa_keys=[self._signer], transport_timeout_s=self._connect_timeout_s,
                           auth_timeout_s=self._auth_timeout_s, read_timeout_s=self._connect_timeout_s)
        except (*LINK_ERRORS, adb_exc.DeviceAuthError, PeerError) as exc:
            try:
                device.close()
            except Exception:
                pass
            raise self._connect_error(what, manager, exc) from exc
        if self._max_payload:
            device._maxdata = min(device._maxdata, int(self._max_payload))
        self._banner = DeviceBanner.parse(manager.banner)
        self._device, self._was_connected = device, True
        log.debug("[%s] connected to %s: max payload %d, features %s", self.name, self.where,
                  device._maxdata, ",".join(sorted(self._banner.features)))
        return device

    def _connect_error(self, what: str, manager: QskewIOManager, exc: BaseException) -> TargetError:
        if isinstance(exc, ConnectionRefusedError):
            reason = (f"cannot connect to {self.where}: connection refused (is adbd listening? on a "
                      f"phone: `adb tcpip 5555`)")
        elif manager.auth_requested:
            reason = (f"{self.where} did not accept ADB key {self._key_file} ({bare(exc)}); authorize "
                      f"this computer on the device (\"Allow USB debugging?\") or add "
                      f"{self._key_file}.pub to its adb_keys")
        elif isinstance(exc, PeerError):
            reason = (f"{self.where} answered, but not in ADB as qskew accepts it ({exc.detail}): is it "
                      f"the right address and port, and is the device's adbd listening there?")
        else:
            reason = f"cannot connect to {self.where}: {bare(exc)}"
        err = TargetError(f"{what}: {reason}", self.name)
        err.reason = reason  # without the operation, for the reconnect summary
        return err

    def _make_transport(self):
        if self._address is not None:
            return NoDelayTcpTransport(*self._address, nodelay=self._nodelay)
        from adb_shell import adb_device

        if adb_device.UsbTransport is None:
            raise TargetError(f"USB device {self._serial!r} needs libusb1: pip install 'adb-shell[usb]'",
                              self.name)
        try:
            return adb_device.UsbTransport.find_adb(self._serial, None, self._connect_timeout_s)
        except Exception as exc:  # usb1 raises its own tree (USBErrorBusy when an adb server holds it)
            raise TargetError(f"cannot open USB device {self._serial!r}: {bare(exc)} (if an adb server "
                              f"runs, stop it: adb kill-server)", self.name) from exc


def shell_command(argv: Sequence[str], cwd: str | None = None) -> str:
    """One ``sh`` command line running ``argv`` verbatim (each argument quoted), stdin empty.

    >>> shell_command(["echo", "a b", "$(reboot)"], cwd="/data/local/tmp")
    "cd /data/local/tmp && echo 'a b' '$(reboot)' </dev/null"
    """
    line = " ".join(shlex.quote(str(a)) for a in argv) + " </dev/null"
    return f"cd {shlex.quote(cwd)} && {line}" if cwd else line


def checked_argv(argv: Sequence[str], device: str) -> list[str]:
    """``argv`` as strings; TargetError for an empty command or a NUL byte (no shell can pass it)."""
    argv = [str(a) for a in argv]
    if not argv:
        raise TargetError("empty command", device)
    if any("\0" in a for a in argv):
        raise TargetError(f"command {shown(argv)} has a NUL byte in an argument", device)
    return argv


def _parse_address(name: str, address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"device {name!r}: address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def bare(exc: BaseException | None) -> str:
    """An exception as "Type: message" (adb-shell's messages alone can be empty)."""
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def shown(argv: Sequence[str]) -> str:
    """A command as it appears in logs and errors: its words joined, quoted as a Python string."""
    return repr(" ".join(str(a) for a in argv))


def decode(data: bytes) -> str:
    """A command's output as text (invalid UTF-8 replaced, never an error)."""
    return bytes(data).decode("utf-8", errors="replace")
