"""Fuzz: a hostile or broken device sends anything; the ADB link raises only qskew's own errors and
never allocates more than the negotiated packet cap.

Each example is a byte stream a "device" sends: ADB messages with any command, arguments, payload
(sync records, shell-v2 packets or noise), true or false lengths (up to 4 GiB) and checksums, mixed
with raw bytes. An ``AdbSession`` connects to it (CNXN, AUTH), runs a command and pulls a file into
memory, through the real link classes (``QskewIOManager``, ``QskewAdbDevice``, the TCP transport's
``recv_into`` path); only the socket is replaced. Allowed outcomes: success or a ``QskewError``.
``tracemalloc`` checks the peak stays under the 1 MiB packet cap plus small change.

Examples: ``QSKEW_FUZZ_EXAMPLES`` if set, else 10 000 when ``CI`` is set, else 300.
"""

from __future__ import annotations

import os
import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import QskewError
from harness.targets import adb_wire as wire
from harness.targets.adb_link import OFFERED_MAX_PAYLOAD, FileSink, LinkLimits, NoDelayTcpTransport
from harness.targets.adb_session import AdbSession

EXAMPLES = int(os.environ.get("QSKEW_FUZZ_EXAMPLES") or (10_000 if os.environ.get("CI") else 300))
FUZZ_LIMITS = LinkLimits(output_bytes=64 * 1024, pull_bytes=64 * 1024, sync_chunk_bytes=wire.SYNC_DATA_MAX)
ALLOCATION_SLACK_BYTES = 512 * 1024  # Python's own small objects while a packet is parsed
LIES = (0, 20, 4096, 4097, 65536, 65537, OFFERED_MAX_PAYLOAD, OFFERED_MAX_PAYLOAD + 1, 1_610_612_736,
        2 ** 32 - 1)  # lengths and maxdata a device may claim; 1.5 GiB: what it could once make qskew allocate


class PeerBytes(NoDelayTcpTransport):
    """The TCP transport with the socket replaced by a fixed byte stream (EOF: connection reset)."""

    def __init__(self, data: bytes):
        super().__init__("fuzz-device", 5555)
        self._data, self._pos = memoryview(data), 0

    def connect(self, transport_timeout_s):
        self._connection = object()

    def close(self):
        self._connection = None

    def is_open(self) -> bool:
        return self._connection is not None

    def bulk_write(self, data, transport_timeout_s):
        return len(data)

    def bulk_read_into(self, view: memoryview, transport_timeout_s) -> int:
        if self._pos >= len(self._data):
            raise ConnectionResetError("fuzz-device closed the connection")
        count = min(len(view), len(self._data) - self._pos, 4096)
        view[:count] = self._data[self._pos:self._pos + count]
        self._pos += count
        return count

    def bulk_read(self, numbytes, transport_timeout_s):
        buf = bytearray(min(numbytes, 4096))
        return bytes(buf[:self.bulk_read_into(memoryview(buf), transport_timeout_s)])


class QuickSigner:
    """Stands in for the RSA signer (pure-Python RSA would take most of the time)."""

    def Sign(self, data):  # noqa: N802 (adb-shell's signer API)
        return b"\0" * 256

    def GetPublicKey(self):  # noqa: N802
        return "QUFBQQ== fuzz@host"


COMMANDS = (wire.A_CNXN, wire.A_AUTH, wire.A_OPEN, wire.A_OKAY, wire.A_CLSE, wire.A_WRTE, wire.A_WRTE, wire.A_WRTE,
            wire.A_SYNC, wire.A_STLS)
SYNC_IDS = (wire.ID_DATA, wire.ID_DONE, wire.ID_OKAY, wire.ID_FAIL, wire.ID_STAT, wire.ID_DENT)
BANNER = b"device::ro.product.model=F;features=shell_v2,cmd\0"


class _Seed:
    """Reads choices from hypothesis's bytes (zeros once they run out), so one cheap draw makes a
    whole structured stream and shrinking still works on plain bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def left(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def u32(self) -> int:
        return int.from_bytes(bytes(self.byte() for _ in range(4)), "little")

    def take(self, n: int) -> bytes:
        return bytes(self.byte() for _ in range(n))

    def number(self, small: tuple[int, ...]) -> int:
        """Mostly a meaningful value (0, 1, a cap, a lie), sometimes any u32."""
        pick = self.byte()
        return self.u32() if pick >= 224 else small[pick % len(small)]


def _payload(seed: _Seed) -> bytes:
    kind, out = seed.byte() % 5, bytearray()
    if kind == 0:
        return BANNER
    if kind == 1:
        return seed.take(seed.byte() % 64)
    for _ in range(seed.byte() % 4):
        if kind == 2:  # sync records with true or lying lengths
            body = seed.take(seed.byte() % 40)
            out += struct.pack("<II", SYNC_IDS[seed.byte() % len(SYNC_IDS)] if seed.byte() < 240 else seed.u32(),
                               len(body) if seed.byte() < 128 else seed.number(LIES)) + body
        elif kind == 3:  # shell-v2 packets
            body = seed.take(seed.byte() % 40)
            out += wire.SHELL_HEADER.pack(seed.byte() % 6, len(body) if seed.byte() < 128 else seed.number(LIES)) + body
        else:
            out += wire.SYNC_STAT_V1.pack(wire.ID_STAT, seed.u32(), seed.u32(), seed.u32())
    return bytes(out)


def _message(seed: _Seed) -> bytes:
    pick = seed.byte()
    cmd = COMMANDS[pick % len(COMMANDS)] if pick < 240 else seed.u32()
    arg0, arg1 = seed.number((0, 1, 2, 3)), seed.number((0, 1, 2, 3) + LIES)
    data = _payload(seed)
    length = len(data) if seed.byte() < 160 else seed.number(LIES)
    check = wire.checksum(data) ^ (1 if seed.byte() >= 224 else 0)
    return struct.pack("<6I", cmd, arg0, arg1, length, check, cmd ^ 0xFFFFFFFF) + data


def peer_stream(data: bytes) -> bytes:
    """The bytes a device sends: mostly a good start (CNXN, or AUTH token then CNXN) so commands are
    reached, then messages and noise."""
    seed, out = _Seed(data), bytearray()
    start = seed.byte() % 4
    if start in (1, 2):
        if start == 2:
            out += wire.pack_message(wire.A_AUTH, wire.AUTH_TOKEN, 0, b"t" * wire.TOKEN_SIZE)
        out += wire.pack_message(wire.A_CNXN, wire.A_VERSION, seed.number(LIES), BANNER)
    while seed.left():
        out += seed.take(seed.byte() % 24) if seed.byte() < 48 else _message(seed)
    return bytes(out)


def _session(data: bytes) -> AdbSession:
    session = AdbSession("fuzz-device", address="127.0.0.1:5555", reconnect_attempts=1, limits=FUZZ_LIMITS,
                         connect_timeout_s=1.0, auth_timeout_s=0.2)
    session._signer, session._key_file = QuickSigner(), "fuzz-key"
    session._make_transport = lambda: PeerBytes(data)
    return session


def _talk(data: bytes) -> None:
    """What qskew does with a device: connect, run a command, pull a small file."""
    session = _session(data)
    try:
        session.run(["echo", "hi"], timeout_s=0.5)
        session.call("pull /x", lambda device: device.pull(
            "/x", FileSink(None, limit_bytes=FUZZ_LIMITS.output_bytes, device="fuzz-device", what="pull /x"),
            read_timeout_s=0.5), idempotent=False)
    except QskewError:
        pass
    finally:
        session.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.binary(max_size=400))
def test_any_peer_bytes_raise_only_qskew_errors_and_stay_under_the_cap(seed):
    data = peer_stream(seed)
    tracemalloc.start()
    try:
        _talk(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < OFFERED_MAX_PAYLOAD + ALLOCATION_SLACK_BYTES, f"peak {peak} bytes"


def test_a_1_5_gib_length_before_auth_is_refused_from_the_header():
    lie = struct.pack("<6I", wire.A_AUTH, wire.AUTH_TOKEN, 0, 1_610_612_736, 0, wire.A_AUTH ^ 0xFFFFFFFF)
    session = _session(lie + b"\0" * 64)
    tracemalloc.start()
    try:
        try:
            session.run(["true"], timeout_s=0.5)
            raise AssertionError("a 1.5 GiB AUTH packet was accepted")
        except QskewError as exc:
            message = str(exc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        session.close()
    assert message.startswith("[fuzz-device]") and "1610612736 bytes" in message and "4096-byte" in message
    assert peak < ALLOCATION_SLACK_BYTES
