"""harness/targets/adb.py: AdbTarget against the simulated device (real ADB wire protocol, real
adb-shell, real shell commands in the device's sandbox)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.errors import CommandFailed, CommandTimeout, ConfigError, TargetError
from harness.targets import adb_keys
from harness.targets.adb import AdbTarget, DeviceBanner, shell_command
from support.adb_sim import when

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
    folder = str(workdir(sim) / "we ird $(touch pwned5) ;'\"")
    target.mkdirs(folder)
    result = target.run([*ECHO_ARGV, *HOSTILE], timeout_s=30, cwd=folder)
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == HOSTILE
    assert target.run(["pwd"], timeout_s=30, cwd=folder).stdout.strip() == folder
    assert not pwned(sim.root)


def test_shell_command_quotes_every_argument():
    assert shell_command(["echo", "a b", "$(x)"]) == "echo 'a b' '$(x)' </dev/null"
    assert shell_command(["ls"], cwd="/d ir") == "cd '/d ir' && ls </dev/null"


def test_banner_parsing():
    banner = DeviceBanner.parse(b"device::ro.product.name=p;ro.product.model=M 1;features=shell_v2,cmd\0")
    assert banner.kind == "device" and banner.props["ro.product.model"] == "M 1"
    assert banner.features == {"shell_v2", "cmd"}
    assert DeviceBanner.parse(b"device::ro.product.name=p;features=").features == frozenset()


@pytest.mark.parametrize("options", [{}, {"features": (), "max_payload": 4096}], ids=["v2-1MiB", "legacy-4K"])
def test_push_pull_stat_sha256_mkdirs(options, simulated, adb_target, tmp_path):
    sim = simulated(**options)
    target = adb_target(sim)
    data = os.urandom(2 * 1024 * 1024 + 13)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    folder = f"{target.workdir}/cache $(touch pwned1)/a;b"
    remote = f"{folder}/f 'x'\n.bin"
    target.mkdirs(folder)
    target.mkdirs(folder)  # idempotent
    target.push(src, remote)
    assert Path(remote).read_bytes() == data  # the sandbox is the device's file system
    assert os.listdir(folder) == ["f 'x'\n.bin"]  # no temp file left behind
    assert target.stat(remote).size_bytes == len(data)
    assert target.sha256(remote) == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back" / "copy.bin"
    target.pull(remote, back)
    assert back.read_bytes() == data and os.listdir(back.parent) == ["copy.bin"]
    missing = f"{folder}/nope"
    assert target.stat(missing) is None and target.sha256(missing) is None
    with pytest.raises(TargetError, match="nope") as err:
        target.pull(missing, tmp_path / "x")
    assert err.value.device == "sim-1" and not (tmp_path / "x").exists()
    assert not pwned(sim.root)
    if options:
        assert target.max_payload == 4096


def test_push_replaces_a_file_whole_and_keeps_the_mode(simulated, adb_target, tmp_path):
    target = adb_target(simulated())
    remote = f"{target.workdir}/f"
    for text in ("first version, longer", "second"):
        (tmp_path / "f").write_text(text)
        target.push(tmp_path / "f", remote)
    assert Path(remote).read_text() == "second"
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o755)
    target.push(script, f"{target.workdir}/tool.sh")
    assert target.run([f"{target.workdir}/tool.sh"], timeout_s=30).stdout == "tool ran\n"


def test_missing_local_file_is_a_clear_error(simulated, adb_target, tmp_path):
    target = adb_target(simulated())
    with pytest.raises(TargetError, match="absent.bin") as err:
        target.push(tmp_path / "absent.bin", f"{target.workdir}/y")
    assert err.value.device == "sim-1"


def test_a_failing_mkdir_is_command_failed(simulated, adb_target, tmp_path):
    sim = simulated()
    target = adb_target(sim)
    blocker = workdir(sim) / "file"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("x")
    with pytest.raises(CommandFailed) as err:
        target.mkdirs(f"{blocker}/sub")
    assert err.value.device == "sim-1" and "mkdir" in str(err.value)


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


def test_properties_come_from_getprop_and_the_devices_python(simulated, adb_target):
    sim = simulated(serial="SER123", model="Pixel Sim")
    props = adb_target(sim).properties()
    assert props["name"] == "sim-1" and props["kind"] == "adb" and props["transport"] == "tcp"
    assert props["model"] == "Pixel Sim" and props["serialno"] == "SER123"
    assert props["abi"] == sim.abi and props["sdk"] and props["os_release"]
    assert props["python_version"].count(".") == 2 and "shell_v2" in props["features"]
    broken = adb_target(sim, name="no-python", python="no-such-python").properties()
    assert broken["python_version"] is None and broken["python_error"]


def test_run_timeout_leaves_the_target_usable(simulated, adb_target):
    target = adb_target(simulated())
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        target.run(["sleep", "20"], timeout_s=0.5)
    assert time.monotonic() - start < 10 and err.value.device == "sim-1" and "sleep" in str(err.value)
    assert target.run(["echo", "ok"], timeout_s=30).stdout == "ok\n"


def test_hash_tool_falls_back_when_sha256sum_is_broken(simulated, adb_target, tmp_path):
    sim = simulated()
    broken = sim.root / "system" / "bin" / "sha256sum"  # first on the device's PATH
    broken.write_text("#!/bin/sh\necho 'sha256sum: applet not found' >&2\nexit 127\n")
    broken.chmod(0o755)
    target = adb_target(sim)
    (tmp_path / "f").write_bytes(b"abc")
    target.push(tmp_path / "f", f"{target.workdir}/f")
    assert target.sha256(f"{target.workdir}/f") == hashlib.sha256(b"abc").hexdigest()
    assert target._sha256_tool()[0] != "sha256sum"


# --- connecting ------------------------------------------------------------------------------

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


def test_bad_addresses_are_config_errors():
    for bad in ("nohost", "host:", "host:abc", ":5555", "h:99999"):
        with pytest.raises(ConfigError, match="host:port"):
            AdbTarget("p", address=bad)
    with pytest.raises(ConfigError, match="exactly one"):
        AdbTarget("p")
    with pytest.raises(ConfigError, match="exactly one"):
        AdbTarget("p", address="h:1", serial="X")


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
    target = adb_target(sim)
    assert target.run(["echo", "hi"], timeout_s=30).stdout == "hi\n"
    key = adb_keys.default_key_path()
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600


# --- long jobs, dropped links and vanishing devices ------------------------------------------



def test_a_detached_job_outlives_dropped_connections(simulated, adb_target):
    sim = simulated()
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "j 1"
    target.mkdirs(str(job))
    started = job / "started"

    def drop_twice():
        sim.drop_connections()
        time.sleep(0.4)
        sim.drop_connections()
    dropper = when(started.exists, drop_twice)
    result = target.run_detached(["sh", "-c", "touch started; sleep 1.5; echo done; echo warn >&2; exit 4"],
                                 str(job), timeout_s=60)
    dropper.join()
    assert result.returncode == 4 and result.stdout == "done\n" and result.stderr == "warn\n"
    assert target.reconnects >= 1


def test_a_job_still_running_from_an_earlier_session_is_attached_not_started_twice(simulated, adb_target):
    sim = simulated()
    job = workdir(sim) / "jobs" / "j 2"
    argv = ["sh", "-c", "echo start >> starts; sleep 1; echo done; exit 3"]
    first = adb_target(sim, name="host-that-died")
    first.mkdirs(str(job))
    from harness.targets.adb import DETACHED_ERR, DETACHED_EXIT, DETACHED_OUT, DETACHED_PID

    files = {k: str(job / n) for k, n in (("out", DETACHED_OUT), ("err", DETACHED_ERR),
                                          ("exit", DETACHED_EXIT), ("pid", DETACHED_PID))}
    first._start_detached(argv, str(job), str(job), files)  # its host then goes away without polling
    first.close()
    result = adb_target(sim, name="next-session").run_detached(argv, str(job), timeout_s=60)
    assert (result.returncode, result.stdout) == (3, "done\n")
    assert (job / "starts").read_text() == "start\n"  # one run, not two
    again = adb_target(sim, name="later").run_detached(argv, str(job), timeout_s=60)  # finished: runs anew
    assert again.returncode == 3 and (job / "starts").read_text() == "start\nstart\n"


def test_a_link_dropped_while_the_job_starts_finds_the_job_by_its_pid_file(simulated, adb_target):
    sim = simulated()
    slow_mv = sim.root / "system" / "bin" / "mv"  # first on the device's PATH: the start's reply comes late
    slow_mv.write_text('#!/bin/sh\nsleep 1\nexec /bin/mv "$@"\n')
    slow_mv.chmod(0o755)
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "j2"
    target.mkdirs(str(job))
    dropper = when((job / "started").exists, sim.drop_connections)  # the job runs; its start is unanswered
    result = target.run_detached(["sh", "-c", "touch started; sleep 0.5; echo ok"], str(job), timeout_s=60)
    dropper.join()
    assert result.returncode == 0 and result.stdout == "ok\n" and target.reconnects >= 1


@pytest.mark.parametrize("options", [{}, LEGACY], ids=["shell_v2", "legacy"])
def test_a_detached_job_past_its_timeout_is_killed_with_its_children(options, simulated, adb_target):
    sim = simulated(**options)
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "slow"
    target.mkdirs(str(job))
    script = "echo $$ > pids; sleep 30 & echo $! >> pids; echo partial; wait"
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        target.run_detached(["sh", "-c", script], str(job), timeout_s=1.0)
    assert time.monotonic() - start < 15
    assert err.value.device == "sim-1" and "partial" in err.value.output
    pids = [int(p) for p in (job / "pids").read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_device_vanishing_mid_run_names_the_device_and_command(simulated, adb_target):
    sim = simulated()
    target = adb_target(sim, name="vanishing")  # the default reconnect schedule (5 attempts)
    job = workdir(sim) / "jobs" / "v"
    target.mkdirs(str(job))
    # vanish_after("run") fires only for a shell command that is still running after 0.5 s; a
    # detached job's start command returns at once, so the test pulls the plug itself.
    when((job / "started").exists, sim.vanish)
    with pytest.raises(TargetError, match="gone") as err:
        target.run_detached(["sh", "-c", "touch started; sleep 20"], str(job), timeout_s=60)
    assert err.value.device == "vanishing" and "sleep 20" in str(err.value)
    assert "5 reconnect attempts failed" in str(err.value)
    with pytest.raises(TargetError, match="refused"):
        target.stat(str(job))


def test_a_device_vanishing_mid_push_names_the_device_and_path(simulated, adb_target, tmp_path):
    sim = simulated()
    target = adb_target(sim, name="vanishing", reconnect_attempts=2)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * 1024 * 1024))
    target.mkdirs(target.workdir)
    sim.vanish_after("push", 1024 * 1024)
    remote = f"{target.workdir}/cache/big.bin"
    with pytest.raises(TargetError) as err:
        target.push(src, remote)
    assert err.value.device == "vanishing" and remote in str(err.value) and "push" in str(err.value)
    assert not Path(remote).exists()


def test_a_device_vanishing_mid_pull_names_the_device_and_path(simulated, adb_target, tmp_path):
    sim = simulated()
    target = adb_target(sim, name="vanishing", reconnect_attempts=2)
    remote = workdir(sim) / "out.bin"
    remote.parent.mkdir(parents=True)
    remote.write_bytes(os.urandom(4 * 1024 * 1024))
    target.connect()
    sim.vanish_after("pull", 1024 * 1024)
    with pytest.raises(TargetError) as err:
        target.pull(str(remote), tmp_path / "got" / "out.bin")
    assert err.value.device == "vanishing" and str(remote) in str(err.value)
    assert not (tmp_path / "got" / "out.bin").exists() and os.listdir(tmp_path / "got") == []


def test_a_full_disk_names_the_device_and_path(simulated, adb_target, tmp_path):
    sim = simulated(disk_quota_bytes=200_000)
    target = adb_target(sim, name="full-phone")
    src = tmp_path / "model.tflite"
    src.write_bytes(os.urandom(1024 * 1024))
    remote = f"{target.workdir}/cache/model.tflite"
    with pytest.raises(TargetError, match="No space left on device") as err:
        target.push(src, remote)
    assert err.value.device == "full-phone" and remote in str(err.value)
    assert not Path(remote).exists() and os.listdir(Path(remote).parent) == []
    small = tmp_path / "small"
    small.write_bytes(b"still works")
    target.push(small, remote)  # the link survived the failed push
    assert Path(remote).read_bytes() == b"still works"


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


def test_a_poll_before_the_job_has_written_its_output_says_running(simulated, adb_target):
    from harness.targets.adb import POLL_SCRIPT

    target = adb_target(simulated())
    pid = target.run(["sh", "-c", "sleep 5 >/dev/null 2>&1 & echo $!"], timeout_s=10).stdout.strip()
    poll = target.run(["sh", "-c", POLL_SCRIPT, "qskew-poll", "/nonexistent/exit", pid, "/nonexistent/out"],
                      timeout_s=10)
    assert (poll.returncode, poll.stdout.strip()) == (0, "running")
    target.run(["kill", pid], timeout_s=10)
