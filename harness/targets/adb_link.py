"""The link under ``AdbTarget``: adb-shell 0.4.4's transport and framing, mended where they fall short.

* ``NoDelayTcpTransport``: ``TCP_NODELAY`` on the socket (adb-shell writes a header and its payload
  in two sends, so without it every small request waits ~40 ms for a delayed ACK), a
  ``bulk_write`` that sends everything (the stock one may send part of a payload) and a
  ``bulk_read`` that reports a closed socket at once (the stock one spins until its read timeout).
* ``QskewIOManager``: keeps the device's CNXN banner (adb-shell drops it), so the features are
  known without probing, checksums payloads with numpy (``payload_checksum``), and never trusts the
  device's numbers: a packet longer than the negotiated maximum (4096 bytes before the device's
  CNXN) is refused from its 24-byte header, before anything is allocated or read.
* ``QskewAdbDevice``: a sync receive buffer that does not copy itself for every record, and sync
  records no longer than ``LinkLimits.sync_chunk_bytes`` (adb-shell would buffer any length).
* ``LinkLimits``: how much a device may make qskew read, hold or write (captured output, a pulled
  file, a sync record); going over one raises ``PeerError`` naming the device and the limit.
* ``DeviceBanner``: the banner parsed as AOSP's ``parse_banner`` does.
* ``FileSource`` / ``FileSink``: local files for adb-shell's push and pull that keep local I/O
  errors apart from socket errors (both are ``OSError``).

``LINK_ERRORS`` lists what a broken link raises; ``harness.targets.adb_session`` translates them once.
``PeerError`` (a qskew ``TargetError``) is a device that broke the protocol or a limit: the link is
dropped and the operation is not retried.
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

from harness.errors import TargetError
from harness.targets import adb_wire as wire

ADB_HEADER = struct.Struct("<6I")  # command, arg0, arg1, data_length, data_check, magic
FAST_CHECKSUM_MIN_BYTES = 4096  # below this the plain sum is as fast as numpy's call overhead
# What qskew accepts in one packet: the maxdata our CNXN offers (adb-shell's constant, 1 MiB); the
# device's own maxdata lowers it, never raises it.
OFFERED_MAX_PAYLOAD = adb_constants.MAX_ADB_DATA
# One command's captured stdout+stderr, or one job log read back into memory. The runner prints a
# few KiB of progress; a device that prints more than this is broken or hostile, not busy.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
# One pulled file. The largest a run pulls is a job's logits: 50 000 samples x 1000 classes x
# float32 = 200 MB; 4 GiB leaves 20x headroom and still stops a device from filling the disk.
MAX_PULL_BYTES = 4 * 1024 ** 3
# One sync record (DATA, a DENT's name, a FAIL message): adbd and adb 29 never send more than 64 KiB.
MAX_SYNC_CHUNK_BYTES = wire.SYNC_DATA_MAX


@dataclass(frozen=True)
class LinkLimits:
    """How much a device may make qskew hold or write (bytes); see the module constants for why."""

    output_bytes: int = MAX_OUTPUT_BYTES
    pull_bytes: int = MAX_PULL_BYTES
    sync_chunk_bytes: int = MAX_SYNC_CHUNK_BYTES


class PeerError(TargetError):
    """The device broke the ADB protocol or one of qskew's limits (``detail`` says how)."""

    def __init__(self, detail: str, device: str):
        super().__init__(detail, device)
        self.detail = detail

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
    computing the payload checksum with numpy (the stock pure-Python byte sum costs ~3.6 ms
    per MiB each way, most of a 1 MiB packet's time on a fast link), and refusing any packet
    longer than ``max_read`` (4096 until the device's CNXN, then the negotiated maxdata)."""

    def __init__(self, transport, device: str = "adb device"):
        super().__init__(transport)
        self.device = device
        self.banner = b""
        self.auth_requested = False
        self.max_read = wire.MAX_PAYLOAD_V1  # CNXN and AUTH payloads before the device's CNXN

    def connect(self, banner, rsa_keys, auth_timeout_s, auth_callback, adb_info):
        """adb-shell's handshake; the maxdata it returns is the negotiated one, not the device's word."""
        available, _device_maxdata = super().connect(banner, rsa_keys, auth_timeout_s, auth_callback, adb_info)
        return available, self.max_read

    def _read_expected_packet_from_device(self, expected_cmds, adb_info):
        cmd, arg0, arg1, data = super()._read_expected_packet_from_device(expected_cmds, adb_info)
        if cmd == adb_constants.CNXN:
            self.banner = bytes(data)
            self.max_read = negotiated_max_payload(arg1)
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
        """As adb-shell's: read one message and verify its checksum (the fast way); the length is
        checked against ``max_read`` before the payload is allocated or read."""
        raw = self._read_bytes_from_device(adb_constants.MESSAGE_SIZE, adb_info)
        cmd, arg0, arg1, length, check, _magic = ADB_HEADER.unpack(raw)
        command = adb_constants.WIRE_TO_ID.get(cmd)
        if not command:
            raise PeerError(f"sent an unknown ADB command 0x{cmd:08x} (arg0 = {arg0}, arg1 = {arg1}); "
                            "it does not speak ADB", self.device)
        if length > self.max_read:
            raise PeerError(f"sent a {command.decode()} packet of {length} bytes, more than the "
                            f"{self.max_read}-byte maximum negotiated for this link", self.device)
        if length == 0:
            return command, arg0, arg1, b""
        data = self._read_bytes_from_device(length, adb_info)
        actual = payload_checksum(data)
        if actual != check:
            raise PeerError(f"sent a {command.decode()} packet with checksum {check}, but its "
                            f"payload sums to {actual}", self.device)
        return command, arg0, arg1, data


def negotiated_max_payload(device_maxdata: int) -> int:
    """The largest packet either side may send: the smaller of our offer and the device's, never
    below the 4096 bytes every ADB peer handles.

    >>> negotiated_max_payload(2 ** 32 - 1), negotiated_max_payload(262144), negotiated_max_payload(0)
    (1048576, 262144, 4096)
    """
    return max(wire.MAX_PAYLOAD_V1, min(int(device_maxdata), OFFERED_MAX_PAYLOAD))


def payload_checksum(data) -> int:
    """The ADB ``data_check``: byte sum of the payload mod 2**32 (numpy above a few KiB).

    >>> payload_checksum(b"host::\\0") == sum(b"host::\\0")
    True
    """
    if len(data) < FAST_CHECKSUM_MIN_BYTES:
        return sum(data) & 0xFFFFFFFF
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


class QskewAdbDevice(AdbDevice):
    """adb-shell's device with a linear-time sync receive buffer and bounded sync records.

    The stock ``_filesync_read_buffered`` re-slices the whole receive buffer for every record
    (``buf = buf[size:]``), copying ~8 MiB per 1 MiB packet of a pull; ``del buf[:size]`` on a
    bytearray drops the front without copying the rest. The stock ``_filesync_read`` buffers any
    length a record claims and fails with a KeyError on an unknown record id; here both are a
    ``PeerError`` naming ``device``.
    """

    def __init__(self, transport, banner=None, device: str = "adb device", limits: LinkLimits = LinkLimits()):
        super().__init__(transport, banner=banner)
        self.device = device
        self.limits = limits

    def _filesync_read(self, expected_ids, adb_info, filesync_info):
        """As adb-shell's (flush, header, payload, FAIL -> AdbCommandFailureException), checked."""
        if filesync_info.send_idx:
            self._filesync_flush(adb_info, filesync_info)
        header_data = self._filesync_read_buffered(filesync_info.recv_message_size, adb_info, filesync_info)
        header = struct.unpack(filesync_info.recv_message_format, header_data)
        command_id = adb_constants.FILESYNC_WIRE_TO_ID.get(header[0])
        if command_id is None:
            raise PeerError(f"sent an unknown sync record id 0x{header[0]:08x}", self.device)
        if command_id == adb_constants.STAT:
            data = None
        elif header[-1] > self.limits.sync_chunk_bytes:
            raise PeerError(f"sent a sync {command_id.decode()} record of {header[-1]} bytes, more than "
                            f"the {self.limits.sync_chunk_bytes}-byte limit", self.device)
        else:
            data = self._filesync_read_buffered(header[-1], adb_info, filesync_info)
        if command_id not in expected_ids:
            if command_id == adb_constants.FAIL:
                reason = bytes(data).decode("utf-8", errors="backslashreplace")
                raise adb_exc.AdbCommandFailureException(f"Command failed: {reason}")
            raise PeerError(f"sent sync record {command_id.decode()} where one of "
                            f"{b', '.join(expected_ids).decode()} was expected", self.device)
        return (command_id, header[1:], None) if data is None else (command_id, header[1:-1], data)

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
    """What adb-shell's pull writes to: a local file (truncated per attempt) or memory, holding at
    most ``limit_bytes`` (PeerError naming ``device`` and ``what`` beyond it)."""

    def __init__(self, path: Path | None, *, limit_bytes: int, device: str, what: str):
        super().__init__()
        self._limit_bytes, self._device, self._what = limit_bytes, device, what
        self._written = 0
        try:
            self._file = open(path, "wb") if path is not None else None
        except OSError as exc:
            raise LocalFileError(exc) from exc

    def write(self, data):
        self._written += len(data)
        if self._written > self._limit_bytes:
            raise PeerError(f"{self._what}: the device sent more than the {self._limit_bytes}-byte limit "
                            f"(LinkLimits)", self._device)
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
