"""harness/targets/simulate/sync.py: the sync: service driven by adb-shell 0.4.4 (push, pull, stat,
list), its sandbox boundary, hostile names, a full disk and a device vanishing mid-transfer."""

import os
import stat

import pytest
from adb_shell import exceptions as adb_exc

from harness.targets.simulate.simulator import SimulatedDevice
from support.adb_sim import adb_shell_device, connect_refused, device_path, sha256_file

TRANSFER_SIZE_BYTES = 3 * 1024 * 1024 + 12345  # "a few MB", not a multiple of any chunk size


def _workdir(device: SimulatedDevice) -> str:
    """The harness's folder as the (confined) device names it."""
    return "/data/local/tmp/qskew"


def _host(device: SimulatedDevice, remote: str) -> str:
    """Where a device path lies on the host (the device's root is its /)."""
    return str(device.root / remote.lstrip("/"))


@pytest.mark.parametrize("max_payload", [4096, 262144, 1 << 20])
def test_adb_shell_push_pull_same_sha256(make_device, tmp_path, max_payload):
    device = make_device(max_payload=max_payload)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(TRANSFER_SIZE_BYTES))
    remote = _workdir(device) + "/nested/model.bin"  # parents are created by SEND
    adb = adb_shell_device(device.address)
    adb.push(str(src), remote)
    assert sha256_file(_host(device, remote)) == sha256_file(src)
    assert stat.S_IMODE(os.stat(_host(device, remote)).st_mode) == 0o777  # adb-shell's 0o770, user bits copied
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
    assert adb.stat(device_path(device, folder / "missing")) == (0, 0, 0)
    entries = {bytes(f.filename): f for f in adb.list(device_path(device, folder))}
    assert set(entries) == {b".", b"..", b"a.txt", b"sub"}
    assert entries[b"a.txt"].size == 5 and stat.S_ISDIR(entries[b"sub"].mode)


def test_pull_of_missing_file_fails_and_connection_stays_usable(make_device, tmp_path):
    device = make_device()
    adb = adb_shell_device(device.address)
    with pytest.raises(adb_exc.AdbCommandFailureException, match="open failed: No such file"):
        adb.pull("/data/local/tmp/nope", str(tmp_path / "x"))
    assert adb.shell("echo still here") == "still here\n"


def test_paths_outside_root_are_refused(make_device, tmp_path):
    device = make_device()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (device.root / "data/local/tmp/escape").symlink_to(tmp_path)
    adb = adb_shell_device(device.address)
    assert adb.stat(str(outside)) == (0, 0, 0)
    assert adb.stat("/data/local/tmp/../../../../outside.txt") == (0, 0, 0)
    assert adb.stat("/system/bin/getprop") == (0, 0, 0)  # only /data/local/tmp is served
    with pytest.raises(adb_exc.AdbCommandFailureException, match="Permission denied"):
        adb.pull("/data/local/tmp/escape/outside.txt", str(tmp_path / "stolen"))
    src = tmp_path / "small.bin"
    src.write_bytes(b"x" * 100)
    with pytest.raises(adb_exc.PushFailedError, match="Permission denied"):
        adb.push(str(src), "/data/local/tmp/escape/planted.bin")
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
        adb.push(str(src), device_path(device, target), read_timeout_s=5)
    assert adb.shell("echo ok") == "ok\n"


HOSTILE_NAME = "we ird 'q\" ;$(touch pwned1)`touch pwned2`, x\nnewline;rm -rf x.bin"


def test_hostile_file_names_round_trip_and_execute_nothing(make_device, tmp_path):
    device = make_device()
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(70_000))
    remote_dir = device.root / "data" / "local" / "tmp" / "h $(touch pwned3)"
    remote = device_path(device, remote_dir / HOSTILE_NAME)
    adb = adb_shell_device(device.address)
    adb.push(str(src), remote)
    assert sha256_file(_host(device, remote)) == sha256_file(src)
    back = tmp_path / "back.bin"
    adb.pull(remote, str(back))
    assert sha256_file(back) == sha256_file(src)
    assert HOSTILE_NAME.encode() in {bytes(f.filename) for f in adb.list(device_path(device, remote_dir))}
    assert adb.stat(remote)[1] == 70_000
    planted = [p for p in (device.root, tmp_path, remote_dir, os.getcwd()) if any(
        os.path.exists(os.path.join(p, f"pwned{i}")) for i in (1, 2, 3))]
    assert planted == []


LINK_ERRORS = (OSError, adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException, adb_exc.InvalidCommandError)


def test_vanish_during_push_fails_the_push_and_refuses_later_connects(make_device, tmp_path):
    device = make_device(max_payload=262144)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))
    remote = device.root / "data" / "local" / "tmp" / "big.bin"
    device.vanish_after("push", 1_000_000)
    adb = adb_shell_device(device.address, read_timeout_s=5)
    with pytest.raises(LINK_ERRORS):
        adb.push(str(src), device_path(device, remote), read_timeout_s=5)
    assert not remote.exists()  # adbd unlinks a half-received file
    assert connect_refused(device.address)


def test_vanish_during_pull(make_device, tmp_path):
    device = make_device()
    remote = device.root / "data" / "local" / "tmp" / "out.bin"
    remote.write_bytes(os.urandom(2_000_000))
    device.vanish_after("pull", 500_000)
    adb = adb_shell_device(device.address)
    with pytest.raises(LINK_ERRORS):
        adb.pull(device_path(device, remote), str(tmp_path / "back.bin"), read_timeout_s=5)
    assert connect_refused(device.address)


def test_disk_quota_fails_the_push_with_no_space(make_device, tmp_path):
    device = make_device(disk_quota_bytes=1_000_000)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_500_000))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(10_000))
    target = device.root / "data" / "local" / "tmp" / "f.bin"
    adb = adb_shell_device(device.address)
    with pytest.raises(adb_exc.PushFailedError, match="No space left on device"):
        adb.push(str(big), device_path(device, target))
    assert not target.exists()
    adb = adb_shell_device(device.address)
    adb.push(str(small), device_path(device, target))
    assert target.stat().st_size == 10_000
