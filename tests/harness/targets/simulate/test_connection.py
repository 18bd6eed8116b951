"""harness/targets/simulate/connection.py: CNXN, AUTH and stream routing, byte by byte with a raw
wire client and end to end with adb-shell 0.4.4."""

import socket
import stat

import pytest
from adb_shell import exceptions as adb_exc
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from harness.targets import adb_wire as wire
from support.adb_sim import RawClient, adb_shell_device


def test_cnxn_reply_banner_version_and_maxdata(make_device):
    device = make_device(max_payload=262144, features=("shell_v2", "cmd"))
    client = RawClient(device.address)
    header, banner = client.connect()
    assert header.name == "CNXN" and header.arg0 == wire.A_VERSION and header.arg1 == 262144
    assert banner.startswith(b"device::ro.product.name=qskew_sim;ro.product.model=")
    assert banner.endswith(b";features=shell_v2,cmd")
    client.close()


def test_auth_token_is_20_bytes_and_never_stls(make_device):
    device = make_device(auth=True)
    client = RawClient(device.address)
    header, token = client.connect(authenticate=False)
    assert (header.name, header.arg0, len(token)) == ("AUTH", wire.AUTH_TOKEN, 20)
    client.send(wire.A_AUTH, wire.AUTH_SIGNATURE, 0, b"\1" * 256)  # a bad signature: a fresh token
    header, token2 = client.recv()
    assert header.name == "AUTH" and len(token2) == 20 and token2 != token
    client.send(wire.A_OPEN, 1, 0, b"shell:echo no\0")  # ignored before the link is up
    with pytest.raises(socket.timeout):
        client.recv(timeout_s=0.3)


def test_unknown_service_refused_and_unknown_clse_ignored(make_device):
    device = make_device()
    client = RawClient(device.address)
    client.connect()
    refused = client.open(5, b"reboot:")
    assert (refused.name, refused.arg0, refused.arg1) == ("CLSE", 0, 5)
    client.send(wire.A_CLSE, 5, 999)  # unknown stream: no echo
    opened = client.open(6, b"sync:")  # the next message is the answer to this OPEN
    assert opened.name == "OKAY" and opened.arg1 == 6 and opened.arg0 != 0
    client.send(wire.A_CLSE, 6, opened.arg0)  # live stream: adbd echoes CLSE
    echo, _ = client.recv()
    assert (echo.name, echo.arg0, echo.arg1) == ("CLSE", opened.arg0, 6)


def test_okay_comes_before_the_reply_and_records_may_straddle_wrtes(make_device):
    device = make_device()
    client = RawClient(device.address)
    client.connect()
    remote_id = client.open(3, b"sync:").arg0
    path = b"/data/local/tmp"
    request = wire.sync_record(wire.ID_STAT, path)
    for i in range(len(request)):  # one byte per WRTE: the device must buffer the stream
        client.send(wire.A_WRTE, 3, remote_id, request[i:i + 1])
        okay, _ = client.recv()
        assert (okay.name, okay.arg0, okay.arg1) == ("OKAY", remote_id, 3)
    reply, data = client.recv()
    assert reply.name == "WRTE"
    ident, mode, _size, _mtime = wire.SYNC_STAT_V1.unpack(data)
    assert ident == wire.ID_STAT and stat.S_ISDIR(mode)


def test_device_honours_host_maxdata_and_keeps_one_wrte_in_flight(make_device):
    device = make_device(max_payload=1 << 20)
    client = RawClient(device.address, maxdata=4096)
    header, _ = client.connect()
    assert header.arg1 == 4096  # the device answers with min(host, own)
    remote_id = client.open(1, b"exec:head -c 20000 /dev/zero").arg0
    received = bytearray()
    while True:
        header, data = client.recv()
        if header.name == "CLSE":
            break
        assert header.name == "WRTE" and len(data) <= 4096
        received += data
        with pytest.raises(socket.timeout):  # nothing more until we acknowledge
            client.recv(timeout_s=0.05)
        client.send(wire.A_OKAY, 1, remote_id)
    assert bytes(received) == b"\0" * 20000


def test_bad_magic_or_oversized_payload_drops_the_connection(make_device):
    device = make_device(max_payload=4096)
    client = RawClient(device.address)
    client.connect()
    bad = bytearray(wire.pack_message(wire.A_OPEN, 1, 0, b"sync:\0"))
    bad[20] ^= 0xFF
    client.sock.sendall(bytes(bad))
    assert client.closed_by_peer()
    client = RawClient(device.address)
    client.connect()
    client.sock.sendall(wire.HEADER.pack(wire.A_WRTE, 1, 1, 8192, 0, wire.A_WRTE ^ 0xFFFFFFFF))
    assert client.closed_by_peer()


def test_checksum_is_not_verified(make_device):
    device = make_device()
    client = RawClient(device.address)
    header, _ = client.connect()
    assert header.name == "CNXN"
    raw = bytearray(wire.pack_message(wire.A_OPEN, 1, 0, b"shell:echo z\0"))
    raw[16:20] = b"\0\0\0\0"  # adb 29 sends data_check=0 after version 0x01000001
    client.sock.sendall(bytes(raw))
    assert client.recv()[0].name == "OKAY"
    assert client.recv()[1] == b"z\n"


class RecordingSigner:
    """Wraps an adb-shell signer and notes whether the public key had to be sent."""

    def __init__(self, key_path):
        self.inner = PythonRSASigner.FromRSAKeyPath(str(key_path))
        self.sent_public_key = False

    def Sign(self, data):  # noqa: N802 (adb-shell's signer API)
        return self.inner.Sign(data)

    def GetPublicKey(self):  # noqa: N802
        self.sent_public_key = True
        return self.inner.GetPublicKey()


def test_auth_first_connect_sends_pubkey_second_verifies_signature(make_device, rsa_key, tmp_path):
    keys_file = tmp_path / "adb_keys"
    device = make_device(auth=True, trusted_keys=keys_file, accept_new_keys=True)
    first = RecordingSigner(rsa_key)
    adb = adb_shell_device(device.address, rsa_keys=[first], auth_timeout_s=5)
    assert first.sent_public_key and adb.shell("echo in") == "in\n"
    adb.close()
    assert keys_file.read_text().split()[0] == (rsa_key.parent / "adbkey.pub").read_text().split()[0]

    strict = make_device(auth=True, trusted_keys=keys_file, accept_new_keys=False, root=device.root)
    second = RecordingSigner(rsa_key)
    adb = adb_shell_device(strict.address, rsa_keys=[second], auth_timeout_s=5)
    assert not second.sent_public_key  # the signature alone was enough
    assert adb.shell("echo again") == "again\n"


def test_auth_refuses_unknown_key_and_missing_keys(make_device, rsa_key, other_rsa_key, tmp_path):
    keys_file = tmp_path / "adb_keys"
    keys_file.write_bytes((rsa_key.parent / "adbkey.pub").read_bytes())
    device = make_device(auth=True, trusted_keys=keys_file, accept_new_keys=False)
    with pytest.raises((adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError)):
        adb_shell_device(device.address, rsa_keys=[RecordingSigner(other_rsa_key)], auth_timeout_s=0.5)
    with pytest.raises(adb_exc.DeviceAuthError):
        adb_shell_device(device.address, rsa_keys=None)
    assert len(keys_file.read_text().splitlines()) == 1  # nothing was added
    good = adb_shell_device(device.address, rsa_keys=[RecordingSigner(rsa_key)], auth_timeout_s=5)
    assert good.shell("echo ok") == "ok\n"


def test_by_default_an_unknown_key_and_a_client_without_auth_are_refused(make_device, rsa_key, tmp_path):
    keys_file = tmp_path / "adb_keys"
    keys_file.write_bytes(b"")
    device = make_device(trusted_keys=keys_file)  # the defaults: auth on, no new keys accepted
    with pytest.raises((adb_exc.TcpTimeoutException, adb_exc.AdbTimeoutError)):  # pubkey offered, ignored
        adb_shell_device(device.address, rsa_keys=[RecordingSigner(rsa_key)], auth_timeout_s=0.5)
    assert keys_file.read_bytes() == b""
    with pytest.raises(adb_exc.DeviceAuthError):
        adb_shell_device(device.address, rsa_keys=None)
    client = RawClient(device.address)  # a raw client that skips AUTH gets nothing but tokens
    header, _ = client.connect(authenticate=False)
    assert header.name == "AUTH"
    client.send(wire.A_OPEN, 1, 0, b"shell:touch pwned\0")
    with pytest.raises(socket.timeout):
        client.recv(timeout_s=0.3)
    assert not (device.root / "data/local/tmp/pwned").exists()


def test_oversized_packets_drop_the_link_before_the_payload_is_read(make_device):
    device = make_device(max_payload=4096)
    before = RawClient(device.address)  # before CNXN: 4096 bytes at most, whatever maxdata says
    before.sock.sendall(wire.HEADER.pack(wire.A_CNXN, wire.A_VERSION, 4096, 0xFFFFFFF0, 0, wire.A_CNXN ^ 0xFFFFFFFF))
    assert before.closed_by_peer()
    after = RawClient(device.address, maxdata=4096)
    assert after.connect()[0].name == "CNXN"
    stream = after.open(1, b"sync:").arg0
    after.send(wire.A_WRTE, 1, stream, b"x" * 4097)  # one byte over the negotiated maxdata
    assert after.closed_by_peer()


def test_a_host_flooding_a_stream_its_service_does_not_read_is_dropped(make_device, monkeypatch):
    from harness.targets.simulate import connection

    monkeypatch.setattr(connection, "STREAM_INBOX_MAX_BYTES", 64 * 1024)
    device = make_device()
    client = RawClient(device.address)
    client.connect()
    stream = client.open(1, b"shell:sleep 30").arg0  # v1 shell: stdin is fed, but sleep never reads
    chunk = b"y" * 60000
    for _ in range(20):
        try:
            client.send(wire.A_WRTE, 1, stream, chunk)
        except OSError:
            break
    assert client.closed_by_peer()
