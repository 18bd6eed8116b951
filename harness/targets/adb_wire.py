"""The ADB wire format: message headers, sync records and shell-protocol-v2 packets.

Shared by the simulated device (``harness.targets.simulate``) and the adb-shell target, so both
sides read the bytes the same way. Pure stdlib; no I/O. Reference: ``devices-and-adb.md`` sections 1-3
(AOSP ``adb/protocol.txt``, ``SYNC.TXT``, ``shell_protocol.h`` at platform-tools 29.0.6).

Message layer: every message is a 24-byte header of six little-endian uint32 ::

    command | arg0 | arg1 | data_length | data_check (byte sum of payload) | magic (command ^ 0xffffffff)

followed by ``data_length`` payload bytes. Commands are four ASCII bytes read as a LE uint32.

Sync (service ``sync:``): requests are ``{u32 id; u32 length}`` + ``length`` bytes; ids are four ASCII
bytes (``STAT``, ``SEND``, ...). Shell v2 (``shell,v2,...:cmd``): packets are ``u8 id; u32 LE length``
+ payload, id 0 stdin, 1 stdout, 2 stderr, 3 exit (one byte), 4 close-stdin, 5 window size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# --- message layer -------------------------------------------------------------------------------

HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size  # 24 bytes


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


A_SYNC = _cmd(b"SYNC")  # obsolete; never valid on the wire
A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_CLSE = _cmd(b"CLSE")
A_WRTE = _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")  # modern TLS upgrade; a simulated device never sends it
COMMAND_NAMES = {value: name for name, value in
                 (("SYNC", A_SYNC), ("CNXN", A_CNXN), ("AUTH", A_AUTH), ("OPEN", A_OPEN),
                  ("OKAY", A_OKAY), ("CLSE", A_CLSE), ("WRTE", A_WRTE), ("STLS", A_STLS))}

A_VERSION_MIN = 0x01000000  # original protocol; what adb-shell says
A_VERSION_SKIP_CHECKSUM = 0x01000001  # peers may send data_check=0 from here on
A_VERSION = 0x01000001  # what adbd and adb 29.0.6 say

MAX_PAYLOAD_V1 = 4096  # limit on CNXN/AUTH payloads before the peer's CNXN, and legacy maxdata
MAX_PAYLOAD_V2 = 256 * 1024
MAX_PAYLOAD = 1024 * 1024  # largest maxdata adb 29.0.6 accepts

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20  # adb 29.0.6 refuses to sign any other size


class WireError(ValueError):
    """Bytes that are not a valid ADB message, sync record or shell-v2 packet."""


@dataclass(frozen=True)
class Header:
    """One decoded 24-byte message header."""

    command: int
    arg0: int
    arg1: int
    data_length: int
    data_check: int

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")


def checksum(data: bytes) -> int:
    """The ``data_check`` field: byte sum of the payload (not a CRC).

    >>> checksum(b"host::\\0")
    526
    """
    return sum(data) & 0xFFFFFFFF


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """Header plus payload, always with the real checksum (adb-shell verifies it)."""
    return HEADER.pack(command, arg0, arg1, len(data), checksum(data), command ^ 0xFFFFFFFF) + data


def unpack_header(raw: bytes) -> Header:
    """Decode a 24-byte header; raises WireError when the magic does not match the command."""
    if len(raw) != HEADER_SIZE:
        raise WireError(f"ADB header must be {HEADER_SIZE} bytes, got {len(raw)}")
    command, arg0, arg1, length, check, magic = HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise WireError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    return Header(command, arg0, arg1, length, check)


# --- sync protocol -------------------------------------------------------------------------------

def mkid(name: bytes) -> int:
    """Sync record id from four ASCII bytes (``MKID`` in file_sync_protocol.h)."""
    return int.from_bytes(name, "little")


ID_STAT = mkid(b"STAT")  # v1 lstat: reply {id, mode, size, mtime}
ID_STA2 = mkid(b"STA2")  # v2 stat (follows symlinks)
ID_LST2 = mkid(b"LST2")  # v2 lstat
ID_LIST = mkid(b"LIST")
ID_LIS2 = mkid(b"LIS2")
ID_DENT = mkid(b"DENT")
ID_DNT2 = mkid(b"DNT2")
ID_SEND = mkid(b"SEND")
ID_SND2 = mkid(b"SND2")  # modern sendrecv_v2; never advertised
ID_RECV = mkid(b"RECV")
ID_RCV2 = mkid(b"RCV2")  # modern sendrecv_v2; never advertised
ID_DATA = mkid(b"DATA")
ID_DONE = mkid(b"DONE")
ID_OKAY = mkid(b"OKAY")
ID_FAIL = mkid(b"FAIL")
ID_QUIT = mkid(b"QUIT")

SYNC_REQUEST = struct.Struct("<II")  # id, length (or mode/mtime for DONE)
SYNC_STAT_V1 = struct.Struct("<IIII")  # id, mode, size, mtime
SYNC_STAT_V2 = struct.Struct("<IIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime
SYNC_DENT_V1 = struct.Struct("<IIIII")  # id, mode, size, mtime, namelen
SYNC_DENT_V2 = struct.Struct("<IIQQIIIIQqqqI")  # stat v2 fields + namelen
SYNC_DATA_MAX = 64 * 1024  # largest DATA record either side accepts
SYNC_RECV_CHUNK = SYNC_DATA_MAX - SYNC_REQUEST.size  # 65528: what adbd sends per DATA record
SYNC_PATH_MAX = 1024  # longer request paths get FAIL "path too long"


def sync_record(ident: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """``{u32 id; u32 length}`` + payload; ``length`` overrides the count (DONE carries mtime there)."""
    return SYNC_REQUEST.pack(ident, len(payload) if length is None else length) + payload


# --- shell protocol v2 ---------------------------------------------------------------------------

SHELL_STDIN = 0
SHELL_STDOUT = 1
SHELL_STDERR = 2
SHELL_EXIT = 3
SHELL_CLOSE_STDIN = 4
SHELL_WINDOW_SIZE = 5
SHELL_HEADER = struct.Struct("<BI")  # id, length


def encode_shell_packet(ident: int, data: bytes) -> bytes:
    """One shell-v2 packet.

    >>> encode_shell_packet(SHELL_EXIT, bytes([7]))
    b'\\x03\\x01\\x00\\x00\\x00\\x07'
    """
    return SHELL_HEADER.pack(ident, len(data)) + data


def iter_shell_packets(data: bytes, max_length: int | None = None) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``data`` into complete packets; returns (packets, incomplete tail to keep for later).

    With ``max_length``, a header claiming a longer packet raises WireError at once (a reader would
    otherwise keep buffering for a packet that may never end).
    """
    packets = []
    view = memoryview(data)
    pos = 0
    while len(view) - pos >= SHELL_HEADER.size:
        ident, length = SHELL_HEADER.unpack_from(view, pos)
        if max_length is not None and length > max_length:
            raise WireError(f"shell-v2 packet of {length} bytes exceeds the {max_length}-byte maximum")
        end = pos + SHELL_HEADER.size + length
        if end > len(view):
            break
        packets.append((ident, bytes(view[pos + SHELL_HEADER.size:end])))
        pos = end
    return packets, bytes(view[pos:])


def parse_shell_v2(data: bytes) -> tuple[bytes, bytes, int | None]:
    """(stdout, stderr, exit code) from the whole byte stream of a ``shell,v2`` service.

    The exit code is None when no exit packet arrived (the stream was cut short); a truncated last
    packet is ignored. Unknown packet ids are skipped, as adb does.

    >>> parse_shell_v2(encode_shell_packet(1, b"out\\n") + encode_shell_packet(2, b"err\\n")
    ...                + encode_shell_packet(3, bytes([5])))
    (b'out\\n', b'err\\n', 5)
    """
    out, err, code = bytearray(), bytearray(), None
    packets, _tail = iter_shell_packets(bytes(data))
    for ident, payload in packets:
        if ident == SHELL_STDOUT:
            out += payload
        elif ident == SHELL_STDERR:
            err += payload
        elif ident == SHELL_EXIT and payload:
            code = payload[0]
    return bytes(out), bytes(err), code
