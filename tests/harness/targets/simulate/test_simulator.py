"""harness/targets/simulate/simulator.py (+ services.py) driven by adb-shell 0.4.4 and by a raw wire client."""

import os
import socket
import stat

import pytest
from adb_shell import exceptions as adb_exc
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from harness.targets import adb_wire as wire
from harness.targets.simulate.simulator import SimulatedDevice
from support.adb_sim import RawClient, adb_shell_device, sha256_file

TRANSFER_SIZE_BYTES = 3 * 1024 * 1024 + 12345  # "a few MB", not a multiple of any chunk size


def _workdir(device: SimulatedDevice) -> str:
    return str(device.root / "data" / "local" / "tmp" / "qskew")


# --- adb-shell ---------------------------------------------------------------------------------

def test_adb_shell_shell_exec_and_v2_exit_code(make_device):
    device = make_device()
    adb = adb_shell_device(device.address)
    assert adb.shell("echo out; echo err >&2") == "out\nerr\n"  # v1: merged
    assert adb.shell("pwd").strip() == str(device.root)
    assert adb.exec_out("printf 'a\\nb'") == "a\nb"
    raw = adb._service(b"shell,v2,raw", b"echo out; echo err >&2; exit 5", decode=False)
    assert wire.parse_shell_v2(raw) == (b"out\n", b"err\n", 5)
    killed = adb._service(b"shell,v2,raw", b"kill -9 $$", decode=False)
    assert wire.parse_shell_v2(killed)[2] == 128 + 9
    adb.close()


def test_device_shell_has_python_and_getprop(make_device, tmp_path):
    device = make_device(serial="sim-7", model="Pixel Sim")
    adb = adb_shell_device(device.address)
    out = adb.shell("python3 -c 'import sys, adb_shell; print(sys.version_info[0])'; "
                    "getprop ro.product.model; getprop ro.serialno; getprop ro.product.cpu.abi; "
                    "getprop ro.build.version.release; getprop no.such.key fallback")
    assert out.split("\n")[:6] == ["3", "Pixel Sim", "sim-7", device.abi, "qskew-sim", "fallback"]
    listing = adb.shell("getprop")
    assert "[ro.product.model]: [Pixel Sim]" in listing.splitlines()
    assert adb.shell("echo $PATH").startswith(str(device.root / "system" / "bin") + ":")


@pytest.mark.parametrize("max_payload", [4096, 262144, 1 << 20])
def test_adb_shell_push_pull_same_sha256(make_device, tmp_path, max_payload):
    device = make_device(max_payload=max_payload)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(TRANSFER_SIZE_BYTES))
    remote = _workdir(device) + "/nested/model.bin"  # parents are created by SEND
    adb = adb_shell_device(device.address)
    adb.push(str(src), remote)
    assert sha256_file(remote) == sha256_file(src)
    assert stat.S_IMODE(os.stat(remote).st_mode) == 0o777  # adb-shell's 0o770, user bits copied
    back = tmp_path / "back.bin"
    adb.pull(remote, str(back))
    assert sha256_file(back) == sha256_file(src)
    mode, size, _mtime = adb.stat(remote)
    assert (stat.S_ISREG(mode), size) == (True, TRANSFER_SIZE_BYTES)
    adb.close()


def test_adb_shell_stat_of_missing_file_and_list(make_device):
    device = make_device()
    folder = device.root / "data" / "local" / "tmp" / "listme"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"12345")
    (folder / "sub").mkdir()
    adb = adb_shell_device(device.address)
    assert adb.stat(str(folder / "missing")) == (0, 0, 0)
    entries = {bytes(f.filename): f for f in adb.list(str(folder))}
    assert set(entries) == {b".", b"..", b"a.txt", b"sub"}
    assert entries[b"a.txt"].size == 5 and stat.S_ISDIR(entries[b"sub"].mode)


def test_pull_of_missing_file_fails_and_connection_stays_usable(make_device, tmp_path):
    device = make_device()
    adb = adb_shell_device(device.address)
    with pytest.raises(adb_exc.AdbCommandFailureException, match="open failed: No such file"):
        adb.pull(str(device.root / "nope"), str(tmp_path / "x"))
    assert adb.shell("echo still here") == "still here\n"


def test_paths_outside_root_are_refused(make_device, tmp_path):
    device = make_device()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (device.root / "escape").symlink_to(tmp_path)
    adb = adb_shell_device(device.address)
    assert adb.stat(str(outside)) == (0, 0, 0)
    assert adb.stat(str(device.root) + "/../outside.txt") == (0, 0, 0)
    with pytest.raises(adb_exc.AdbCommandFailureException, match="Permission denied"):
        adb.pull(str(device.root / "escape" / "outside.txt"), str(tmp_path / "stolen"))
    src = tmp_path / "small.bin"
    src.write_bytes(b"x" * 100)
    with pytest.raises(adb_exc.PushFailedError, match="Permission denied"):
        adb.push(str(src), str(device.root / "escape" / "planted.bin"))
    assert not (tmp_path / "planted.bin").exists()
    assert [bytes(f.filename) for f in adb.list(str(tmp_path))] == []


def test_push_onto_a_directory_fails_after_the_data_and_the_link_survives(make_device, tmp_path):
    device = make_device(max_payload=4096)
    target = device.root / "data" / "local" / "tmp" / "adir"
    target.mkdir()
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(50_000))  # many WRTEs: FAIL must not be lost by adb-shell
    adb = adb_shell_device(device.address)
    with pytest.raises(adb_exc.PushFailedError, match="create file: File exists"):
        adb.push(str(src), str(target), read_timeout_s=5)
    assert adb.shell("echo ok") == "ok\n"


# --- auth with adb-shell ----------------------------------------------------------------------

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
    device = make_device(auth=True, trusted_keys=keys_file)
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


# --- hostile names ----------------------------------------------------------------------------

HOSTILE_NAME = "we ird 'q\" ;$(touch pwned1)`touch pwned2`, x\nnewline;rm -rf x.bin"


def test_hostile_file_names_round_trip_and_execute_nothing(make_device, tmp_path):
    device = make_device()
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(70_000))
    remote_dir = device.root / "data" / "local" / "tmp" / "h $(touch pwned3)"
    remote = str(remote_dir / HOSTILE_NAME)
    adb = adb_shell_device(device.address)
    adb.push(str(src), remote)
    assert sha256_file(remote) == sha256_file(src)
    back = tmp_path / "back.bin"
    adb.pull(remote, str(back))
    assert sha256_file(back) == sha256_file(src)
    assert HOSTILE_NAME.encode() in {bytes(f.filename) for f in adb.list(str(remote_dir))}
    assert adb.stat(remote)[1] == 70_000
    planted = [p for p in (device.root, tmp_path, remote_dir, os.getcwd()) if any(
        os.path.exists(os.path.join(p, f"pwned{i}")) for i in (1, 2, 3))]
    assert planted == []


# --- security -----------------------------------------------------------------------------------

def test_listens_on_loopback_only(make_device):
    device = make_device()
    port_hex = f"{device.address[1]:04X}"
    with open("/proc/net/tcp") as fh:
        listening = [line.split()[1] for line in fh.readlines()[1:]
                     if line.split()[1].endswith(":" + port_hex) and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port_hex]  # 127.0.0.1, state LISTEN
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        SimulatedDevice(device.root, host="0.0.0.0")
    with pytest.raises(ValueError, match="5555-5585"):
        SimulatedDevice(device.root, port=5555)
    with pytest.raises(ValueError, match="delayed_ack"):
        SimulatedDevice(device.root, features=("shell_v2", "delayed_ack"))


def test_restart_on_the_same_port(make_device, device_root):
    first = make_device()
    port = first.address[1]
    adb = adb_shell_device(first.address)
    first.stop()
    first.stop()  # idempotent
    second = make_device(port=port)
    adb = adb_shell_device(second.address)
    assert adb.shell("echo back") == "back\n"


# --- the wire, byte by byte ---------------------------------------------------------------------

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
    header, token = client.connect()
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


def test_legacy_device_refuses_shell_v2(make_device):
    device = make_device(features=())
    client = RawClient(device.address)
    _, banner = client.connect()
    assert banner.endswith(b"features=")
    assert client.open(1, b"shell,v2,raw:echo hi").name == "CLSE"
    assert client.open(2, b"shell:echo hi").name == "OKAY"


def test_okay_comes_before_the_reply_and_records_may_straddle_wrtes(make_device):
    device = make_device()
    client = RawClient(device.address)
    client.connect()
    remote_id = client.open(3, b"sync:").arg0
    path = str(device.root).encode()
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
    client.send(wire.A_CNXN, wire.A_VERSION, 1 << 20, b"host::\0")
    header, _ = client.recv()
    assert header.name == "CNXN"
    raw = bytearray(wire.pack_message(wire.A_OPEN, 1, 0, b"shell:echo z\0"))
    raw[16:20] = b"\0\0\0\0"  # adb 29 sends data_check=0 after version 0x01000001
    client.sock.sendall(bytes(raw))
    assert client.recv()[0].name == "OKAY"
    assert client.recv()[1] == b"z\n"
