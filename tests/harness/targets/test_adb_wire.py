"""harness/targets/adb_wire.py: headers, checksums, sync records and shell-v2 packets."""

import pytest

from harness.targets import adb_wire as wire


def test_message_round_trip_with_real_checksum_and_magic():
    raw = wire.pack_message(wire.A_WRTE, 7, 9, b"\xff\x01hello")
    header = wire.unpack_header(raw[:wire.HEADER_SIZE])
    assert (header.command, header.arg0, header.arg1, header.data_length) == (wire.A_WRTE, 7, 9, 7)
    assert header.data_check == 0xFF + 1 + sum(b"hello")
    assert header.name == "WRTE"
    assert raw[wire.HEADER_SIZE:] == b"\xff\x01hello"
    assert raw[20:24] == (wire.A_WRTE ^ 0xFFFFFFFF).to_bytes(4, "little")


def test_command_constants_are_the_ascii_names():
    for name in ("CNXN", "AUTH", "OPEN", "OKAY", "CLSE", "WRTE", "SYNC", "STLS"):
        assert getattr(wire, f"A_{name}").to_bytes(4, "little") == name.encode()
    assert wire.A_CNXN == 0x4E584E43 and wire.A_CNXN ^ 0xFFFFFFFF == 0xB1A7B1BC
    assert wire.ID_SEND == 0x444E4553 and wire.ID_LIS2 == 0x3253494C and wire.ID_DNT2 == 0x32544E44


def test_bad_magic_is_refused():
    raw = bytearray(wire.pack_message(wire.A_OKAY, 1, 2))
    raw[20] ^= 1
    with pytest.raises(wire.WireError, match="bad magic"):
        wire.unpack_header(bytes(raw))


def test_record_sizes_match_adbd():
    assert wire.SYNC_STAT_V2.size == 72
    assert wire.SYNC_DENT_V1.size == 20
    assert wire.SYNC_DENT_V2.size == 76
    assert wire.SYNC_RECV_CHUNK == 65528
    assert wire.sync_record(wire.ID_DONE, length=1234) == b"DONE" + (1234).to_bytes(4, "little")


def test_parse_shell_v2_separates_streams_and_reads_exit_code():
    data = (wire.encode_shell_packet(wire.SHELL_STDOUT, b"a") + wire.encode_shell_packet(wire.SHELL_STDERR, b"E")
            + wire.encode_shell_packet(9, b"unknown id is skipped") + wire.encode_shell_packet(wire.SHELL_STDOUT, b"b")
            + wire.encode_shell_packet(wire.SHELL_EXIT, bytes([42])))
    assert wire.parse_shell_v2(data) == (b"ab", b"E", 42)


def test_parse_shell_v2_without_exit_packet_or_with_a_cut_packet_gives_none():
    data = wire.encode_shell_packet(wire.SHELL_STDOUT, b"partial") + wire.encode_shell_packet(wire.SHELL_STDOUT, b"cut")
    assert wire.parse_shell_v2(data[:-2]) == (b"partial", b"", None)
    assert wire.parse_shell_v2(b"") == (b"", b"", None)


def test_iter_shell_packets_keeps_the_incomplete_tail():
    data = wire.encode_shell_packet(wire.SHELL_STDIN, b"xyz") + wire.encode_shell_packet(wire.SHELL_CLOSE_STDIN, b"")
    packets, tail = wire.iter_shell_packets(data[:9])
    assert packets == [(wire.SHELL_STDIN, b"xyz")] and tail == data[8:9]
    packets, tail = wire.iter_shell_packets(tail + data[9:])
    assert packets == [(wire.SHELL_CLOSE_STDIN, b"")] and tail == b""
