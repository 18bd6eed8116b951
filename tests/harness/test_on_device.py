"""harness/on_device.py: content-addressed pushes, verified pulls and the model check, on a LocalTarget."""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

import pytest

from harness import on_device
from harness.errors import ArtifactError, TargetError
from harness.records import ModelArtifact
from harness.targets.local import LocalTarget


def _file(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / "host" / "blob.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_a_file_is_pushed_once_and_verified(tmp_path):
    target, transfer = LocalTarget(tmp_path / "device"), on_device.Transfer()
    local, sha = _file(tmp_path, b"model bytes")
    remote = on_device.push_file(target, local, sha, "model", ".tflite", transfer)
    assert remote == posixpath.join(target.workdir, "cache", sha + ".tflite")
    assert Path(remote).read_bytes() == b"model bytes" and transfer.pushed == {"model": 11}
    on_device.push_file(target, local, sha, "model", ".tflite", transfer)  # already there
    assert transfer.pushed == {"model": 11}


def test_a_push_whose_device_copy_differs_is_refused(tmp_path):
    target = LocalTarget(tmp_path / "device")
    local, _ = _file(tmp_path, b"model bytes")
    with pytest.raises(TargetError, match="the device copy has sha256"):
        on_device.push_verified(target, local, "0" * 64, posixpath.join(target.workdir, "x"))


def test_a_pull_is_trusted_only_when_it_hashes_to_the_record(tmp_path):
    target, transfer = LocalTarget(tmp_path / "device"), on_device.Transfer()
    local, sha = _file(tmp_path, b"outputs")
    remote = on_device.push_file(target, local, sha, "inputs", ".npy", transfer)
    on_device.pull_verified(target, remote, tmp_path / "back.npy", sha, transfer)
    assert (tmp_path / "back.npy").read_bytes() == b"outputs" and transfer.bytes_pulled == 7
    with pytest.raises(TargetError, match="the runner recorded " + "1" * 64):
        on_device.pull_verified(target, remote, tmp_path / "again.npy", "1" * 64, transfer)


def test_a_model_changed_on_disk_is_an_artifact_error(tmp_path):
    local, sha = _file(tmp_path, b"model bytes")
    art = ModelArtifact(variant="v", path=local, sha256=sha, size_bytes=11, inputs=(), outputs=(), recipe={})
    assert on_device.checked_model(art) == local
    local.write_bytes(b"other bytes")
    with pytest.raises(ArtifactError, match="changed on disk"):
        on_device.checked_model(art)
