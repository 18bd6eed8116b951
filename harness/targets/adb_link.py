"""The link under ``AdbTarget``: adb-shell 0.4.4's transport and framing, mended where they fall short.

* ``NoDelayTcpTransport``: ``TCP_NODELAY`` on the socket (adb-shell writes a header and its payload
  in two sends, so without it every small request waits ~40 ms for a delayed ACK), a
  ``bulk_write`` that sends everything (the stock one may send part of a payload) and a
  ``bulk_read`` that reports a closed socket at once (the stock one spins until its read timeout).
* ``QskewIOManager``: keeps the device's CNXN banner (adb-shell drops it), so the features are
  known without probing, and checksums payloads with numpy (``payload_checksum``).
* ``QskewAdbDevice``: a sync receive buffer that does not copy itself for every record.
* ``DeviceBanner``: the banner parsed as AOSP's ``parse_banner`` does.
* ``FileSource`` / ``FileSink``: local files for adb-shell's push and pull that keep local I/O
  errors apart from socket errors (both are ``OSError``).

``LINK_ERRORS`` lists what a broken link raises; ``harness.targets.adb_session`` translates them once.
"""

from __future__ import annotations

import io
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from adb_shell import constants as adb_constants
from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice, _AdbIOManager
from adb_shell.transport.tcp_transport import TcpTransport

ADB_HEADER = struct.Struct("<6I")  # command, arg0, arg1, data_length, data_check, magic
FAST_CHECKSUM_MIN_BYTES = 4096  # below this the plain sum is as fast as numpy's call overhead

# What a broken link looks like: the socket, adb-shell's framing and its timeouts.
LINK_ERRORS = (OSError, adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError,
               adb_exc.AdbConnectionError, adb_exc.InvalidChecksumError,
               adb_exc.InvalidCommandError, adb_exc.InvalidResponseError,
               adb_exc.UsbReadFailedError, adb_exc.UsbWriteFailedError)
TIMEOUT_ERRORS = (adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError, socket.timeout)


@dataclass(frozen=True)
class DeviceBanner:
    """The device's CNXN banner: ``device::ro.product.name=x;ro.product.model=y;features=a,b``."""

    kind: str
    props: Mapping[str, str]
    features: frozenset[str]

    @classmethod
    def parse(cls, data: bytes) -> "DeviceBanner":
        """Parse a banner (AOSP ``parse_banner``): type, then ``;``-separated key=value pairs.

        >>> sorted(DeviceBanner.parse(b"device::ro.product.model=P;features=shell_v2,cmd").features)
        ['cmd', 'shell_v2']
        """
        text = bytes(data).rstrip(b"\0").decode("utf-8", errors="replace")
        pieces = text.split(":", 2)
        props = {}
        for item in (pieces[2] if len(pieces) == 3 else "").split(";"):
            key, sep, value = item.partition("=")
            if sep:
                props[key] = value
        features = frozenset(f for f in props.pop("features", "").split(",") if f)
        return cls(kind=pieces[0], props=props, features=features)


class NoDelayTcpTransport(TcpTransport):
    """adb-shell's TCP transport with ``TCP_NODELAY``, whole writes and prompt EOF detection.

    ``nodelay=False`` keeps Nagle's algorithm (stock behaviour), for the benchmark only.
    """

    def __init__(self, host: str, port: int, nodelay: bool = True):
        super().__init__(host, port)
        self.nodelay = nodelay

    def connect(self, transport_timeout_s):
        super().connect(transport_timeout_s)
        if self.nodelay:
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def is_open(self) -> bool:
        """False when the peer has closed the socket (EOF or reset waiting to be read)."""
        if self._connection is None:
            return False
        try:
            readable, _, _ = select.select([self._connection], [], [], 0)
            return not readable or self._connection.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def bulk_read(self, numbytes, transport_timeout_s):
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:  # recv() == b"" is EOF; the stock transport would spin until its read timeout
            raise ConnectionResetError(f"{self._host}:{self._port} closed the connection")
        return data

    def bulk_read_into(self, view: memoryview, transport_timeout_s) -> int:
        """``recv_into`` for whole packets: no per-chunk bytes objects, no re-joining copies."""
        readable, _, _ = select.select([self._connection], [], [], transport_timeout_s)
        if not readable:
            raise adb_exc.TcpTimeoutException(
                f"reading from {self._host}:{self._port} timed out ({transport_timeout_s} s)")
        count = self._connection.recv_into(view)
        if not count:
            raise ConnectionResetError(f"{self._host}:{self._port} closed the connection")
        return count

    def bulk_write(self, data, transport_timeout_s):
        view, sent = memoryview(data), 0
        while sent < len(view):
            _, writable, _ = select.select([], [self._connection], [], transport_timeout_s)
            if not writable:
                raise adb_exc.TcpTimeoutException(
                    f"sending to {self._host}:{self._port} timed out after {transport_timeout_s} s")
            sent += self._connection.send(view[sent:])
        return sent


class QskewIOManager(_AdbIOManager):
    """adb-shell's I/O manager, keeping the CNXN banner (features) that ``connect`` throws away,
    and computing the payload checksum with numpy (the stock pure-Python byte sum costs ~3.6 ms
    per MiB each way, most of a 1 MiB packet's time on a fast link)."""

    def __init__(self, transport):
        super().__init__(transport)
        self.banner = b""
        self.auth_requested = False

    def _read_expected_packet_from_device(self, expected_cmds, adb_info):
        cmd, arg0, arg1, data = super()._read_expected_packet_from_device(expected_cmds, adb_info)
        if cmd == adb_constants.CNXN:
            self.banner = bytes(data)
        elif cmd == adb_constants.AUTH:
            self.auth_requested = True
        return cmd, arg0, arg1, data

    def _send(self, msg, adb_info):
        """As adb-shell's ``_send`` (header, then payload), with the fast checksum."""
        data = msg.data
        header = ADB_HEADER.pack(msg.command, msg.arg0, msg.arg1, len(data), payload_checksum(data),
                                 msg.magic)
        self._transport.bulk_write(header, adb_info.transport_timeout_s)
        if data:
            self._transport.bulk_write(data, adb_info.transport_timeout_s)

    def _read_bytes_from_device(self, length, adb_info):
        """As adb-shell's (same timeouts), reading straight into one buffer on TCP."""
        if not isinstance(self._transport, NoDelayTcpTransport):
            return super()._read_bytes_from_device(length, adb_info)
        buf = bytearray(length)
        view, got, start = memoryview(buf), 0, time.time()
        while got < length:
            got += self._transport.bulk_read_into(view[got:], adb_info.transport_timeout_s)
            if got < length and time.time() - start > adb_info.read_timeout_s:
                raise adb_exc.AdbTimeoutError(f"Timeout: read {got} of {length} bytes "
                                              f"(read_timeout_s = {adb_info.read_timeout_s})")
        return bytes(buf)  # adb-shell's own type (signers and parsers expect bytes)

    def _read_packet_from_device(self, adb_info):
        """As adb-shell's: read one message and verify its checksum (the fast way)."""
        raw = self._read_bytes_from_device(adb_constants.MESSAGE_SIZE, adb_info)
        cmd, arg0, arg1, length, check, _magic = ADB_HEADER.unpack(raw)
        command = adb_constants.WIRE_TO_ID.get(cmd)
        if not command:
            raise adb_exc.InvalidCommandError(f"Unknown command: 0x{cmd:08x} (arg0 = {arg0}, arg1 = {arg1})")
        if length == 0:
            return command, arg0, arg1, b""
        data = self._read_bytes_from_device(length, adb_info)
        actual = payload_checksum(data)
        if actual != check:
            raise adb_exc.InvalidChecksumError(f"Received checksum {actual} != {check}")
        return command, arg0, arg1, data


def payload_checksum(data) -> int:
    """The ADB ``data_check``: byte sum of the payload mod 2**32 (numpy above a few KiB).

    >>> payload_checksum(b"host::\\0") == sum(b"host::\\0")
    True
    """
    if len(data) < FAST_CHECKSUM_MIN_BYTES:
        return sum(data) & 0xFFFFFFFF
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


class QskewAdbDevice(AdbDevice):
    """adb-shell's device with a linear-time sync receive buffer.

    The stock ``_filesync_read_buffered`` re-slices the whole receive buffer for every record
    (``buf = buf[size:]``), copying ~8 MiB per 1 MiB packet of a pull; ``del buf[:size]`` on a
    bytearray drops the front without copying the rest.
    """

    def _filesync_read_buffered(self, size, adb_info, filesync_info):
        buf = filesync_info.recv_buffer
        while len(buf) < size:
            _, data = self._read_until([adb_constants.WRTE], adb_info)
            buf += data
        result = buf[:size]
        del buf[:size]
        return result


class LocalFileError(Exception):
    """A local read/write failed inside an adb-shell transfer (kept apart from socket OSErrors)."""


class FileSource(io.BytesIO):
    """What adb-shell's push reads from: a local file, without taking local errors for link errors."""

    def __init__(self, path: Path):
        super().__init__()
        try:
            self._file = open(path, "rb")
        except OSError as exc:
            raise LocalFileError(exc) from exc

    def read(self, size=-1):
        try:
            return self._file.read(size)
        except OSError as exc:
            raise LocalFileError(exc) from exc

    def close(self):
        self._file.close()
        super().close()


class FileSink(io.BytesIO):
    """What adb-shell's pull writes to: a local file (truncated per attempt) or memory."""

    def __init__(self, path: Path | None):
        super().__init__()
        try:
            self._file = open(path, "wb") if path is not None else None
        except OSError as exc:
            raise LocalFileError(exc) from exc

    def write(self, data):
        if self._file is None:
            return super().write(data)
        try:
            return self._file.write(data)
        except OSError as exc:
            raise LocalFileError(exc) from exc

    def close(self):
        if self._file is not None:
            self._file.close()
        super().close()
