"""Faults of the simulated ADB device: vanishing mid-push/pull/run, dropped links, a full disk.
(The ``qskew devices simulate`` command is tested in tests/harness/commands/test_devices.py.)"""

import os
import threading
import time

import pytest
from adb_shell import exceptions as adb_exc

from support.adb_sim import adb_shell_device

LINK_ERRORS = (OSError, adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException, adb_exc.InvalidCommandError)
WAIT_S = 10.0  # upper bound for anything these tests wait for


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead too
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks
        return False


def _refused(address) -> bool:
    with pytest.raises(ConnectionRefusedError):
        adb_shell_device(address)
    return True


def test_vanish_during_push_fails_the_push_and_refuses_later_connects(make_device, tmp_path):
    device = make_device(max_payload=262144)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))
    remote = device.root / "data" / "local" / "tmp" / "big.bin"
    device.vanish_after("push", 1_000_000)
    adb = adb_shell_device(device.address, read_timeout_s=5)
    with pytest.raises(LINK_ERRORS):
        adb.push(str(src), str(remote), read_timeout_s=5)
    assert not remote.exists()  # adbd unlinks a half-received file
    assert _refused(device.address)


def test_vanish_during_pull(make_device, tmp_path):
    device = make_device()
    remote = device.root / "data" / "local" / "tmp" / "out.bin"
    remote.write_bytes(os.urandom(2_000_000))
    device.vanish_after("pull", 500_000)
    adb = adb_shell_device(device.address)
    with pytest.raises(LINK_ERRORS):
        adb.pull(str(remote), str(tmp_path / "back.bin"), read_timeout_s=5)
    assert _refused(device.address)


def test_vanish_during_run_kills_the_runner(make_device):
    device = make_device()
    device.vanish_after("run")
    adb = adb_shell_device(device.address)
    started = time.monotonic()
    with pytest.raises(LINK_ERRORS):
        adb.shell("echo $$ > runner.pid; exec sleep 30 # device_runner", read_timeout_s=5)
    assert time.monotonic() - started < 5
    pid = int((device.root / "runner.pid").read_text())
    _wait_for(lambda: not _alive(pid), "the runner to be killed")
    assert _refused(device.address)


def test_run_fault_ignores_commands_without_the_marker(make_device):
    device = make_device()
    device.vanish_after("run")
    adb = adb_shell_device(device.address)
    assert adb.shell("sleep 0.7; echo done") == "done\n"
    with pytest.raises(ValueError, match="unknown fault stage"):
        device.vanish_after("reboot")


def test_drop_connections_keeps_processes_and_listening(make_device):
    device = make_device()
    adb = adb_shell_device(device.address)
    errors = []

    def long_command():
        try:
            adb.shell("echo $$ > sleeper.pid; exec sleep 30", read_timeout_s=20)
        except LINK_ERRORS as exc:
            errors.append(exc)

    worker = threading.Thread(target=long_command)
    worker.start()
    pid_file = device.root / "sleeper.pid"
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the sleeper to start")
    pid = int(pid_file.read_text())
    device.drop_connections()
    worker.join(WAIT_S)
    assert not worker.is_alive() and errors, "the client should see the dropped link"
    assert _alive(pid)
    again = adb_shell_device(device.address)
    assert again.shell(f"kill -0 {pid} && echo alive") == "alive\n"
    device.stop()
    _wait_for(lambda: not _alive(pid), "stop() to kill the sleeper")


def test_disk_quota_fails_the_push_with_no_space(make_device, tmp_path):
    device = make_device(disk_quota_bytes=1_000_000)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_500_000))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(10_000))
    target = device.root / "data" / "local" / "tmp" / "f.bin"
    adb = adb_shell_device(device.address)
    with pytest.raises(adb_exc.PushFailedError, match="No space left on device"):
        adb.push(str(big), str(target))
    assert not target.exists()
    adb = adb_shell_device(device.address)
    adb.push(str(small), str(target))
    assert target.stat().st_size == 10_000


def test_stop_kills_detached_background_jobs_too(make_device):
    device = make_device()
    adb = adb_shell_device(device.address)
    pid = int(adb.shell("setsid sleep 30 > /dev/null 2>&1 < /dev/null & echo $!"))
    assert _alive(pid)
    assert adb.shell("echo still") == "still\n"
    device.stop()
    _wait_for(lambda: not _alive(pid), "stop() to kill the detached job")
