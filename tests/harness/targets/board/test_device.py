"""The board behind the simulated ADB device: path mapping and identity (unit), and Debian's real
``adb`` talking to a simulated device whose shell is an aarch64 board (slow).

The slow test is what issue 13 asks of ``qskew devices simulate --board``: ``uname -m`` through
``adb shell`` prints aarch64, ``ls /`` shows the board and not the host, writing outside
/data/local/tmp fails, getprop's ABI matches, and push/pull reach the board's /data/local/tmp.
"""

import os
from pathlib import Path

import pytest

from harness.targets.board.build import Board
from harness.targets.board.device import BoardShell, resolve_board
from harness.targets.board.manifest import Manifest
from harness.targets.board.spec import BoardError, BoardSpec
from harness.targets.simulate.sandbox import DeviceSandbox


def _shell(tmp_path, arch="aarch64") -> BoardShell:
    board = Board(tmp_path / "b", Manifest(BoardSpec(arch), (), (), "2026-01-01T00:00:00+00:00", 1.0))
    return BoardShell(board, tmp_path / "storage")


def test_device_paths_map_onto_the_storage_folder(tmp_path):
    shell = _shell(tmp_path)
    assert shell.host_path("/data/local/tmp/qskew/a.bin") == str(tmp_path / "storage/data/local/tmp/qskew/a.bin")
    assert shell.host_path("x.txt") == str(tmp_path / "storage/data/local/tmp/x.txt")  # the shell's cwd
    assert shell.host_path("/etc/passwd") == str(tmp_path / "storage/etc/passwd")  # outside: sync refuses


def test_a_board_device_serves_only_its_data_folder_and_reports_the_board(tmp_path):
    device = DeviceSandbox(tmp_path / "storage", board=_shell(tmp_path, "armv7l"), auth=False)
    assert device.sync_root == os.path.realpath(tmp_path / "storage/data/local/tmp")
    props = device.properties()
    assert props["ro.product.cpu.abi"] == "armeabi-v7a" == device.abi
    assert props["ro.product.model"] == "qskew board armv7l"
    assert props["ro.soc.model"] == "ARM Cortex-A7" and props["qskew.board.runtime"] == "tflite-runtime==2.14.0"
    assert device.python == "/usr/bin/python3"
    env = device.shell_env()
    assert env["PATH"].startswith("/system/bin:") and env["TMPDIR"] == "/data/local/tmp"
    assert not any(str(tmp_path) in v for v in env.values())  # nothing of the host inside the board


def test_a_plain_device_maps_device_paths_like_a_board(tmp_path):
    """Without a board the device is confined too (host_root.HostShell): its root is its /."""
    device = DeviceSandbox(tmp_path, auth=False)
    assert device.sync_root == str(device.root / "data" / "local" / "tmp")
    assert device.host_path("/etc/passwd") == str(device.root / "etc" / "passwd")  # sync refuses it
    assert device.host_path("x/y") == str(device.root / "data" / "local" / "tmp" / "x" / "y")
    assert device.properties()["ro.product.model"] == "qskew simulated device"


def test_resolve_board_names_what_it_wants(tmp_path):
    with pytest.raises(BoardError, match="qskew board build.*aarch64"):
        resolve_board(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_real_adb_on_an_aarch64_board(aarch64_board, tmp_path):
    from support.adb_sim import ADB_BINARY, RealAdb, trusted_keys_file
    from harness.targets.simulate.simulator import SimulatedDevice

    if not os.path.exists(ADB_BINARY):
        pytest.skip(f"Debian's adb is not installed ({ADB_BINARY}); apt-get install adb")
    storage = tmp_path / "device"
    adb = RealAdb(tmp_path / "adb-home")
    with SimulatedDevice(storage, board=BoardShell(aarch64_board, storage),
                         trusted_keys=trusted_keys_file(tmp_path)) as device:
        try:
            serial = adb.connect(device.address)
            _check_board_shell(adb, serial, tmp_path)
        finally:
            adb.kill_server()


def _check_board_shell(adb, serial: str, tmp_path: Path) -> None:
    assert adb("shell", "uname", "-m", serial=serial).stdout == "aarch64\n"
    listing = set(adb("shell", "ls", "/", serial=serial).stdout.split())
    assert {"bin", "usr", "data", "system", "proc"} <= listing
    assert not listing & {"work", "root", "home", "opt", "var"}  # the host's top folders are not there
    denied = adb("shell", "touch /etc/qskew-x", serial=serial)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert adb("shell", "echo x > /system/bin/getprop", serial=serial).returncode != 0
    assert adb("shell", "getprop", "ro.product.cpu.abi", serial=serial).stdout == "arm64-v8a\n"
    machine = adb("shell", "python3 -c 'import platform; print(platform.machine())'", serial=serial)
    assert machine.stdout == "aarch64\n", machine.stderr
    src = tmp_path / "f.txt"
    src.write_text("board\n")
    assert adb("push", str(src), "/data/local/tmp/q/f.txt", serial=serial).returncode == 0
    assert adb("shell", "cat", "/data/local/tmp/q/f.txt", serial=serial).stdout == "board\n"
    assert adb("push", str(src), "/etc/f.txt", serial=serial).returncode != 0  # sync serves /data/local/tmp only
