"""harness/targets/adb_files.py: push, pull, stat, sha256 and mkdir -p through AdbTarget against the
simulated device, whole files or none, and errors naming the device and the path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from harness.errors import CommandFailed, TargetError
from support.adb_sim import device_path


def pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("pwned*")]


def workdir(sim) -> Path:
    return sim.root / "data" / "local" / "tmp" / "qskew"


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
    assert (sim.root / remote.lstrip("/")).read_bytes() == data  # the root is the device's /
    assert os.listdir(sim.root / folder.lstrip("/")) == ["f 'x'\n.bin"]  # no temp file left behind
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
    sim = simulated()
    target = adb_target(sim)
    remote = f"{target.workdir}/f"
    for text in ("first version, longer", "second"):
        (tmp_path / "f").write_text(text)
        target.push(tmp_path / "f", remote)
    assert (sim.root / remote.lstrip("/")).read_text() == "second"
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
        target.mkdirs(f"{device_path(sim, blocker)}/sub")
    assert err.value.device == "sim-1" and "mkdir" in str(err.value)


def test_hash_tool_falls_back_when_sha256sum_is_broken(simulated, adb_target, tmp_path):
    sim = simulated()
    broken = sim.root / "system" / "bin" / "sha256sum"  # first on the device's PATH
    broken.write_text("#!/bin/sh\necho 'sha256sum: applet not found' >&2\nexit 127\n")
    broken.chmod(0o755)
    target = adb_target(sim)
    (tmp_path / "f").write_bytes(b"abc")
    target.push(tmp_path / "f", f"{target.workdir}/f")
    assert target.sha256(f"{target.workdir}/f") == hashlib.sha256(b"abc").hexdigest()
    assert target._files.sha256_tool()[0] != "sha256sum"


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
    assert not (sim.root / remote.lstrip("/")).exists()


def test_a_device_vanishing_mid_pull_names_the_device_and_path(simulated, adb_target, tmp_path):
    sim = simulated()
    target = adb_target(sim, name="vanishing", reconnect_attempts=2)
    remote = workdir(sim) / "out.bin"
    remote.parent.mkdir(parents=True)
    remote.write_bytes(os.urandom(4 * 1024 * 1024))
    target.connect()
    sim.vanish_after("pull", 1024 * 1024)
    with pytest.raises(TargetError) as err:
        target.pull(device_path(sim, remote), tmp_path / "got" / "out.bin")
    assert err.value.device == "vanishing" and device_path(sim, remote) in str(err.value)
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
    host = sim.root / remote.lstrip("/")
    assert not host.exists() and os.listdir(host.parent) == []
    small = tmp_path / "small"
    small.write_bytes(b"still works")
    target.push(small, remote)  # the link survived the failed push
    assert (sim.root / remote.lstrip("/")).read_bytes() == b"still works"
