"""harness/on_device.py: content-addressed pushes, verified pulls and the model check, on a LocalTarget."""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from pathlib import Path

import numpy as np
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


def test_shards_are_views_in_test_set_order_and_one_shard_is_the_test_set_itself():
    from tests.support.tiny_models import make_test_set

    test = make_test_set(10)
    shards = on_device.shards_of(test, 4)
    assert [(s.index, s.count, s.start, s.stop) for s in shards] == [(0, 3, 0, 4), (1, 3, 4, 8), (2, 3, 8, 10)]
    assert all(np.shares_memory(s.data.x, test.x) and not s.data.x.flags.writeable for s in shards)
    assert np.array_equal(np.concatenate([s.data.ids for s in shards]), test.ids)
    assert on_device.shards_of(test, 10)[0].data is test and len(on_device.shards_of(test, 10)) == 1
    with pytest.raises(ValueError, match="shard_samples must be >= 1"):
        on_device.shards_of(test, 0)


def test_a_shards_inputs_file_holds_np_save_bytes_named_by_their_hash(tmp_path, monkeypatch):
    import io

    from tests.support.tiny_models import make_test_set

    monkeypatch.setattr(on_device, "NPY_CHUNK_BYTES", 100)  # several chunks per file
    test = make_test_set(10)
    for shard in on_device.shards_of(test, 4):
        expected = io.BytesIO()
        np.save(expected, np.ascontiguousarray(shard.data.x), allow_pickle=False)
        path, sha = on_device._inputs_file(shard.data)
        assert path.read_bytes() == expected.getvalue()
        assert sha == shard.sha256 == hashlib.sha256(expected.getvalue()).hexdigest() and path.name == f"{sha}.npy"
    fortran = dataclasses.replace(test, x=np.asfortranarray(test.x))  # any layout: C-order bytes
    assert on_device._inputs_file(fortran)[1] == on_device._inputs_file(test)[1]


def test_shards_are_pushed_once_per_device_and_named_by_content(tmp_path):
    from tests.support.tiny_models import make_test_set

    target, transfer = LocalTarget(tmp_path / "device"), on_device.Transfer()
    shards = on_device.shards_of(make_test_set(10), 4)
    remotes = [on_device.push_inputs(target, s.data, transfer)[0] for s in shards]
    assert [posixpath.basename(r) for r in remotes] == [f"{s.sha256}.npy" for s in shards]
    again = on_device.Transfer()
    for s in shards:
        on_device.push_inputs(target, s.data, again)
    assert transfer.pushed["inputs"] == sum(Path(r).stat().st_size for r in remotes) and again.pushed == {"inputs": 0}


def test_samples_that_cannot_travel_are_a_dataset_error():
    from harness.errors import DatasetError
    from tests.support.tiny_models import make_test_set

    test = make_test_set(4)
    objects = dataclasses.replace(test, x=np.array([object()] * 4))
    with pytest.raises(DatasetError, match="dataset 'tiny': samples of dtype object cannot travel"):
        on_device._inputs_file(objects)
