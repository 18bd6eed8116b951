"""harness/targets/adb_session.py: commands, exit codes, quoting, connecting and errors, through
AdbTarget against the simulated device (real ADB wire protocol, real adb-shell, real shell commands
in the device's sandbox)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TargetError
from support.adb_sim import device_path
from harness.targets import adb_keys
from harness.targets.adb import AdbTarget
from harness.targets.adb_session import shell_command

HOSTILE = ["a b", "it's", 'say "hi"', "x;touch pwned1", "$(touch pwned2)", "`touch pwned3`",
           "line1\nline2", "--", "*", "", "~", "&& touch pwned4", "\\", "ünï"]


ECHO_ARGV = ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


LEGACY = {"features": ()}  # a device without shell_v2 (Android < 7): exit codes through a marker


def pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("pwned*")]


def workdir(sim) -> Path:
    return sim.root / "data" / "local" / "tmp" / "qskew"


@pytest.mark.parametrize("options", [{}, LEGACY], ids=["shell_v2", "legacy"])
def test_run_returns_exit_codes_and_output(options, simulated, adb_target):
    sim = simulated(**options)
    target = adb_target(sim)
    result = target.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=30)
    assert result.returncode == 7
    if options:  # v1 merges stderr into stdout
        assert target.features == frozenset()
        assert result.stdout == "out\nerr\n" and result.stderr == ""
    else:
        assert "shell_v2" in target.features
        assert result.stdout == "out\n" and result.stderr == "err\n"
    assert target.run(["true"], timeout_s=30).returncode == 0
    assert target.run(["sh", "-c", "printf no-newline; exit 3"], timeout_s=30).stdout == "no-newline"


@pytest.mark.parametrize("options", [{}, LEGACY], ids=["shell_v2", "legacy"])
def test_hostile_arguments_are_data(options, simulated, adb_target):
    sim = simulated(**options)
    target = adb_target(sim)
    folder = device_path(sim, workdir(sim) / "we ird $(touch pwned5) ;'\"")
    target.mkdirs(folder)
    result = target.run([*ECHO_ARGV, *HOSTILE], timeout_s=30, cwd=folder)
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == HOSTILE
    assert target.run(["pwd"], timeout_s=30, cwd=folder).stdout.strip() == folder
    assert not pwned(sim.root)


def test_shell_command_quotes_every_argument():
    assert shell_command(["echo", "a b", "$(x)"]) == "echo 'a b' '$(x)' </dev/null"
    assert shell_command(["ls"], cwd="/d ir") == "cd '/d ir' && ls </dev/null"


def test_payload_is_the_devices_maximum_capped_by_max_payload(simulated, adb_target):
    sim = simulated()
    assert adb_target(sim).max_payload == 1024 * 1024
    assert adb_target(sim, max_payload=65536).max_payload == 65536


def test_socket_has_tcp_nodelay(simulated, adb_target):
    target = adb_target(simulated())
    sock = target.connect()._io_manager._transport._connection
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    stock = adb_target(simulated(), nodelay=False)
    assert stock.connect()._io_manager._transport._connection.getsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_run_timeout_leaves_the_target_usable(simulated, adb_target):
    target = adb_target(simulated())
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        target.run(["sleep", "20"], timeout_s=0.5)
    assert time.monotonic() - start < 10 and err.value.device == "sim-1" and "sleep" in str(err.value)
    assert target.run(["echo", "ok"], timeout_s=30).stdout == "ok\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_names_the_device(adb_home):
    port = _free_port()
    target = AdbTarget("lab-phone", address=f"127.0.0.1:{port}")
    with pytest.raises(TargetError, match="refused") as err:
        target.run(["true"], timeout_s=5)
    assert err.value.device == "lab-phone" and f"127.0.0.1:{port}" in str(err.value)
    assert "[lab-phone]" in str(err.value)


def test_usb_without_libusb_says_what_to_install(adb_home):
    pytest.importorskip("adb_shell")
    try:
        import usb1  # noqa: F401
        pytest.skip("libusb1 is installed here")
    except ImportError:
        pass
    with pytest.raises(TargetError, match=r"pip install 'adb-shell\[usb\]'") as err:
        AdbTarget("usb-phone", serial="0123ABC").run(["true"], timeout_s=5)
    assert err.value.device == "usb-phone"


def test_auth_with_a_trusted_key_and_refusal_of_an_unknown_one(simulated, adb_target, tmp_path):
    good, bad = tmp_path / "keys" / "good", tmp_path / "keys" / "bad"
    adb_keys.generate_key(good, "test")
    adb_keys.generate_key(bad, "test")
    trusted = tmp_path / "adb_keys"
    trusted.write_text(Path(str(good) + ".pub").read_text() + "\n")
    sim = simulated(auth=True, trusted_keys=trusted, accept_new_keys=False)
    assert adb_target(sim, key_path=good).run(["echo", "in"], timeout_s=30).stdout == "in\n"
    refused = adb_target(sim, name="locked-phone", key_path=bad, auth_timeout_s=1.0)
    with pytest.raises(TargetError, match="did not accept ADB key") as err:
        refused.run(["true"], timeout_s=5)
    assert err.value.device == "locked-phone" and str(bad) in str(err.value)


def test_a_device_that_accepts_new_keys_lets_the_generated_key_in(simulated, adb_target, adb_home):
    sim = simulated(auth=True, accept_new_keys=True)
    target = adb_target(sim, key_path=None)
    assert target.run(["echo", "hi"], timeout_s=30).stdout == "hi\n"
    key = adb_keys.default_key_path()
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600


def test_a_peer_that_does_not_speak_adb_is_named_as_such():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def http_reply():  # an HTTP server (or proxy) where adbd was expected
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\0" * 24)
        conn.close()

    threading.Thread(target=http_reply, daemon=True).start()
    target = AdbTarget("web", address=f"127.0.0.1:{server.getsockname()[1]}", connect_timeout_s=5,
                       reconnect_attempts=1)
    with pytest.raises(TargetError, match=r"answered, but not in ADB") as info:
        target.run(["true"], timeout_s=5)
    assert info.value.device == "web"
    server.close()
