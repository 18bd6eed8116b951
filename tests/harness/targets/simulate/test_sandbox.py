"""harness/targets/simulate/sandbox.py: the device's identity and getprop, its sandbox folder, and
the "run" fault."""

import re
import stat
import time

import pytest
from adb_shell import exceptions as adb_exc

from harness.targets.simulate.sandbox import EXECUTABLE_MODE, DeviceSandbox
from support.adb_sim import adb_shell_device, connect_refused, device_processes, wait_until

LINK_ERRORS = (OSError, adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException, adb_exc.InvalidCommandError)


def test_device_shell_has_python_and_getprop(make_device, tmp_path):
    device = make_device(serial="sim-7", model="Pixel Sim")
    adb = adb_shell_device(device.address)
    out = adb.shell("python3 -c 'import sys, adb_shell; print(sys.version_info[0])'; "
                    "getprop ro.product.model; getprop ro.serialno; getprop ro.product.cpu.abi; "
                    "getprop ro.build.version.release; getprop no.such.key fallback")
    assert out.split("\n")[:6] == ["3", "Pixel Sim", "sim-7", device.abi, "qskew-sim", "fallback"]
    listing = adb.shell("getprop")
    assert "[ro.product.model]: [Pixel Sim]" in listing.splitlines()
    assert adb.shell("echo $PATH").startswith("/system/bin:")


def test_vanish_during_run_kills_the_runner(make_device):
    device = make_device()
    device.vanish_after("run")
    adb = adb_shell_device(device.address)
    started = time.monotonic()
    with pytest.raises(LINK_ERRORS):
        adb.shell("echo $$ > runner.pid; exec sleep 30 # device_runner", read_timeout_s=5)
    assert time.monotonic() - started < 5
    assert int((device.root / "data/local/tmp/runner.pid").read_text()) > 0  # it ran
    wait_until(lambda: not device_processes(device), "the runner to be killed")
    assert connect_refused(device.address)


def test_run_fault_ignores_commands_without_the_marker(make_device):
    device = make_device()
    device.vanish_after("run")
    adb = adb_shell_device(device.address)
    assert adb.shell("sleep 0.7; echo done") == "done\n"
    with pytest.raises(ValueError, match="unknown fault stage"):
        device.vanish_after("reboot")


@pytest.mark.parametrize("options, message", [
    ({"serial": "a:b"}, "serial 'a:b' must be non-empty"),
    ({"model": ""}, "model '' must be non-empty"),
    ({"features": ("shell_v2", "x;y")}, "feature 'x;y'"),
    ({"max_payload": 1024}, "max_payload 1024 must be between"),
    ({"disk_quota_bytes": -1}, "disk_quota_bytes must be >= 0"),
])
def test_settings_a_real_adbd_could_not_announce_are_refused(device_root, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DeviceSandbox(device_root, **options)


def test_sandbox_tools_are_executable_and_rewritten_whole_on_restart(make_device, device_root):
    first = make_device(serial="one")
    bin_dir = first.root / "system" / "bin"
    first.stop()
    make_device(serial="two", root=device_root)
    for name in ("python3", "python", "getprop"):
        assert stat.S_IMODE((bin_dir / name).stat().st_mode) == EXECUTABLE_MODE
    assert sorted(p.name for p in bin_dir.iterdir()) == ["getprop", "python", "python3"]  # no temp files
    assert "ro.serialno) printf '%s\\n' two ;;" in (bin_dir / "getprop").read_text()
