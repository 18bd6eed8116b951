"""harness/targets/simulate/simulator.py: listening, restarts, dropped links, stop().
(The ``qskew devices simulate`` command is tested in tests/harness/commands/test_devices.py.)"""

import threading

import pytest
from adb_shell import exceptions as adb_exc

from harness.targets.simulate.simulator import SimulatedDevice
from support.adb_sim import WAIT_S, adb_shell_device, host_pid, process_alive, wait_until

LINK_ERRORS = (OSError, adb_exc.AdbTimeoutError, adb_exc.TcpTimeoutException, adb_exc.InvalidCommandError)


def test_listens_on_loopback_by_default_and_elsewhere_only_with_trusted_keys(make_device, tmp_path):
    device = make_device()
    port_hex = f"{device.address[1]:04X}"
    with open("/proc/net/tcp") as fh:
        listening = [line.split()[1] for line in fh.readlines()[1:]
                     if line.split()[1].endswith(":" + port_hex) and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port_hex]  # 127.0.0.1, state LISTEN
    keys = tmp_path / "adb_keys"
    with pytest.raises(ValueError, match="not loopback.*without auth"):
        SimulatedDevice(device.root, host="0.0.0.0", auth=False)
    with pytest.raises(ValueError, match="accept_new_keys"):
        SimulatedDevice(device.root, host="0.0.0.0", trusted_keys=keys, accept_new_keys=True)
    assert SimulatedDevice(device.root, host="0.0.0.0", trusted_keys=keys).address == ("0.0.0.0", 0)
    SimulatedDevice(device.root, host="127.0.0.1", auth=False)  # loopback: the owner may opt out
    with pytest.raises(ValueError, match="5555-5585"):
        SimulatedDevice(device.root, port=5555)
    with pytest.raises(ValueError, match="delayed_ack"):
        SimulatedDevice(device.root, features=("shell_v2", "delayed_ack"))


def test_auth_is_the_default_and_accepting_any_key_warns(device_root, tmp_path, caplog):
    with pytest.raises(ValueError, match="no trusted_keys file"):
        SimulatedDevice(device_root)  # auth on, nothing trusted: nobody could ever connect
    with caplog.at_level("WARNING"):
        device = SimulatedDevice(device_root, trusted_keys=tmp_path / "adb_keys", accept_new_keys=True)
    assert device.auth and "ANY new ADB key" in caplog.text


def test_restart_on_the_same_port(make_device, device_root):
    first = make_device()
    port = first.address[1]
    adb = adb_shell_device(first.address)
    first.stop()
    first.stop()  # idempotent
    second = make_device(port=port)
    adb = adb_shell_device(second.address)
    assert adb.shell("echo back") == "back\n"


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
    pid_file = device.root / "data/local/tmp/sleeper.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "the sleeper to start")
    pid = int(pid_file.read_text())  # as the device numbers it (its own PID namespace)
    host = host_pid(device, pid)
    device.drop_connections()
    worker.join(WAIT_S)
    assert not worker.is_alive() and errors, "the client should see the dropped link"
    assert host is not None and process_alive(host)
    again = adb_shell_device(device.address)
    assert again.shell(f"kill -0 {pid} && echo alive") == "alive\n"
    device.stop()
    wait_until(lambda: not process_alive(host), "stop() to kill the sleeper")


def test_stop_kills_detached_background_jobs_too(make_device):
    device = make_device()
    adb = adb_shell_device(device.address)
    pid = int(adb.shell("setsid sleep 30 > /dev/null 2>&1 < /dev/null & echo $!"))
    host = host_pid(device, pid)
    assert host is not None and process_alive(host)
    assert adb.shell("echo still") == "still\n"
    device.stop()
    wait_until(lambda: not process_alive(host), "stop() to kill the detached job")




