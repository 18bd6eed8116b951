"""``qskew devices check`` and ``qskew devices simulate``; ``qskew device ...`` as a deprecated alias."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.targets.process import run_command
from support.adb_sim import adb_shell_device, install_test_key, session_public_key, trusted_keys_file

WAIT_S = 10.0  # upper bound for anything these tests wait for
REPO = Path(__file__).resolve().parents[3]


def test_check_table_and_exit_code(tmp_path, capfd):
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[device]]\nname = "here"\nreach = "local"\nworkdir = "{tmp_path / "d"}"\n'
                       f'[[device]]\nname = "broken"\nreach = "local"\npython = "/nonexistent/python3"\n'
                       f'workdir = "{tmp_path / "e"}"\n')
    code = main(["devices", "check", "--devices", str(devices), "--device", "reach=local"])
    out = capfd.readouterr().out
    assert code == 1  # "broken" cannot run anything
    assert re.search(r"^here\s+local\s+yes\s+x86_64", out, re.M) and "broken: ERROR" in out and "/nonexistent/python3" in out
    assert main(["devices", "check", "--devices", str(devices), "--device", "here", "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert [d["name"] for d in doc["devices"]] == ["here"] and doc["devices"][0]["delegates"]["builtin"] == "ok"


def test_simulate_serves_until_sigterm_and_exits_zero(tmp_path):
    root = tmp_path / "cli-device"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "devices", "simulate", "--port", "0",
                             "--root", str(root), "--serial", "cli-sim", "--features", "none",
                             "--trusted-keys", str(trusted_keys_file(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"qskew simulated device cli-sim listening on 127\.0\.0\.1:(\d+) \(root (.+)\)\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert Path(match.group(2)) == root.resolve()
        address = ("127.0.0.1", int(match.group(1)))
        adb = adb_shell_device(address)
        assert adb.shell("getprop ro.serialno") == "cli-sim\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0
        with pytest.raises(ConnectionRefusedError):
            adb_shell_device(address)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_refuses_emulator_ports():
    proc = run_command([sys.executable, "-m", "harness.cli", "devices", "simulate", "--port", "5555"],
                       timeout_s=WAIT_S * 3, cwd=REPO)
    assert proc.returncode == 2
    assert "5555-5585" in proc.stderr and "emulators" in proc.stderr
    assert "deprecated" not in proc.stderr


def test_simulate_trusts_the_users_key_by_default_and_warns_when_accepting_any(tmp_path):
    home = tmp_path / "home"
    install_test_key(home)  # this user's ~/.android/adbkey
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "devices", "simulate", "--port", "0",
                             "--accept-new-keys"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) ", line).group(1))
        assert adb_shell_device(("127.0.0.1", port)).shell("echo in") == "in\n"
        keys = (home / ".config" / "qskew" / "simulated_adb_keys").read_bytes()
        assert keys == session_public_key() + b"\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0
        assert "WARNING: --accept-new-keys" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_off_loopback_refuses_to_start_without_auth(capsys, tmp_path):
    for extra in (["--no-auth"], ["--accept-new-keys", "--trusted-keys", str(tmp_path / "k")]):
        assert main(["devices", "simulate", "--host", "0.0.0.0", "--port", "0", *extra]) == 2
        assert "not loopback" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_device_is_a_deprecated_alias_that_still_works(capsys):
    assert main(["device", "simulate", "--port", "5555"]) == 2  # reaches the simulate command itself
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "qskew: 'device' is deprecated; use 'qskew devices'"
    assert err[1].startswith("qskew: error: cannot start the simulated device on port 5555")


def test_devices_without_a_subcommand_prints_its_help_and_exits_2(capsys):
    assert main(["devices"]) == 2
    err = capsys.readouterr().err
    assert "check" in err and "simulate" in err
