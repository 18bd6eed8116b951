"""Conformance: Debian's real ``adb`` (29.0.6) against the simulated device.

Each test runs its own adb server on a private port with a temporary HOME (ADB_EMU/MDNS/USB off),
connects to a device on an ephemeral port, polls ``adb devices`` until it says ``device``, and
kills the server at teardown. Skipped when /usr/bin/adb is missing.
"""

import os

import pytest

from support.adb_sim import device_path, sha256_file

TRANSFER_SIZE_BYTES = 5 * 1024 * 1024 + 777  # "several MB", not a multiple of 65528


def _push_pull_ls(adb, serial, device, tmp_path, name="model.bin"):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(TRANSFER_SIZE_BYTES))
    remote_dir = device.root / "data" / "local" / "tmp" / "qskew"
    remote = remote_dir / name
    pushed = adb("push", str(src), device_path(device, remote), serial=serial)
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert sha256_file(remote) == sha256_file(src)
    back = tmp_path / "back.bin"
    pulled = adb("pull", device_path(device, remote), str(back), serial=serial)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert sha256_file(back) == sha256_file(src)
    listing = adb("ls", device_path(device, remote_dir), serial=serial)
    assert listing.returncode == 0
    entries = {line.split(" ", 3)[3]: line.split(" ")[1] for line in listing.stdout.splitlines()}
    assert {".", "..", name} <= set(entries)
    assert entries[name] == f"{TRANSFER_SIZE_BYTES:08x}"  # adb ls: mode size mtime name, in hex


@pytest.mark.parametrize("max_payload", [4096, 262144, 1 << 20])
def test_real_adb_shell_exit_code_push_pull_ls(real_adb, make_device, tmp_path, max_payload):
    device = make_device(max_payload=max_payload)
    serial = real_adb.connect(device.address)
    echo = real_adb("shell", "echo", "hello", "world", serial=serial)
    assert (echo.returncode, echo.stdout) == (0, "hello world\n")
    assert real_adb("shell", "exit 7", serial=serial).returncode == 7  # shell v2 carries the exit code
    split = real_adb("shell", "echo out; echo err >&2", serial=serial)
    assert (split.stdout, split.stderr) == ("out\n", "err\n")
    assert real_adb("exec-out", "getprop ro.serialno", serial=serial).stdout == "qskew-sim\n"
    _push_pull_ls(real_adb, serial, device, tmp_path)
    detail = real_adb("devices", "-l").stdout
    assert f"{serial}" in detail and "model:qskew_simulated_device" in detail


def test_real_adb_with_accept_new_keys_sends_its_key_and_is_accepted(real_adb, make_device, tmp_path):
    keys_file = tmp_path / "adb_keys"
    device = make_device(auth=True, trusted_keys=keys_file, accept_new_keys=True)
    serial = real_adb.connect(device.address)
    assert real_adb("shell", "echo", "authorized", serial=serial).stdout == "authorized\n"
    host_key = (real_adb.home / ".android" / "adbkey.pub").read_text().split()[0]
    assert [line.split()[0] for line in keys_file.read_text().splitlines()] == [host_key]
    _push_pull_ls(real_adb, serial, device, tmp_path)


def test_real_adb_refused_by_default_when_the_device_does_not_know_its_key(real_adb, make_device, rsa_key,
                                                                          tmp_path):
    keys_file = tmp_path / "adb_keys"
    keys_file.write_bytes((rsa_key.parent / "adbkey.pub").read_bytes())  # some other host's key
    device = make_device(trusted_keys=keys_file)  # the defaults: auth on, no new keys accepted
    serial = f"{device.address[0]}:{device.address[1]}"
    real_adb("connect", serial)
    result = real_adb("shell", "echo", "no", serial=serial, timeout_s=30)
    assert result.returncode != 0 and "unauthorized" in (result.stderr + result.stdout)
    assert "\tunauthorized" in real_adb("devices").stdout
    assert keys_file.read_bytes() == (rsa_key.parent / "adbkey.pub").read_bytes()  # nothing appended
    assert not (device.root / "data" / "local" / "tmp" / "no").exists()


def test_real_adb_with_a_legacy_device_without_shell_v2(real_adb, make_device, tmp_path):
    device = make_device(features=(), max_payload=4096)
    serial = real_adb.connect(device.address)
    echo = real_adb("shell", "echo", "legacy", serial=serial)
    assert (echo.returncode, echo.stdout) == (0, "legacy\n")
    assert real_adb("shell", "exit 7", serial=serial).returncode == 0  # no exit code without shell_v2
    merged = real_adb("shell", "echo out; echo err >&2", serial=serial)
    assert merged.stdout == "out\nerr\n"
    _push_pull_ls(real_adb, serial, device, tmp_path)


def test_real_adb_hostile_file_name_round_trips_and_executes_nothing(real_adb, make_device, tmp_path):
    device = make_device()
    serial = real_adb.connect(device.address)
    name = "we ird 'q\" ;$(touch pwned1)`touch pwned2`, x"
    _push_pull_ls(real_adb, serial, device, tmp_path, name=name)
    newline_name = "line1\nline2 $(touch pwned3).bin"
    src = tmp_path / "small.bin"
    src.write_bytes(b"payload")
    remote = device.root / "data" / "local" / "tmp" / newline_name
    assert real_adb("push", str(src), device_path(device, remote), serial=serial).returncode == 0
    assert remote.read_bytes() == b"payload"
    assert real_adb("pull", device_path(device, remote), str(tmp_path / "nl.bin"), serial=serial).returncode == 0
    assert (tmp_path / "nl.bin").read_bytes() == b"payload"
    for folder in (device.root, device.root / "data" / "local" / "tmp" / "qskew", tmp_path, os.getcwd()):
        assert not any(os.path.exists(os.path.join(folder, f"pwned{i}")) for i in (1, 2, 3))


def test_real_adb_push_failures_are_reported(real_adb, make_device, tmp_path):
    device = make_device(disk_quota_bytes=1_000_000)
    serial = real_adb.connect(device.address)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(2_000_000))
    full = real_adb("push", str(src), "/data/local/tmp/big.bin", serial=serial)
    assert full.returncode != 0 and "No space left on device" in full.stdout + full.stderr
    outside = real_adb("push", str(src), str(tmp_path / "planted.bin"), serial=serial)
    assert outside.returncode != 0 and "Permission denied" in outside.stdout + outside.stderr
    assert not (tmp_path / "planted.bin").exists() and not (device.root / "data/local/tmp/big.bin").exists()
    assert real_adb("shell", "echo", "alive", serial=serial).stdout == "alive\n"


def test_real_adb_stdin_reaches_the_command_through_shell_v2(real_adb, make_device):
    device = make_device()
    serial = real_adb.connect(device.address)
    data = os.urandom(300_000)
    target = device.root / "data/local/tmp/stdin.bin"
    remote = device_path(device, target)
    result = real_adb("shell", f"cat > '{remote}'; wc -c < '{remote}'", serial=serial, stdin_bytes=data)
    assert (result.returncode, result.stdout.strip()) == (0, "300000")  # close-stdin (id 4) ended cat
    assert target.read_bytes() == data
