"""A board's manifest: written atomically, read back equal, refused when malformed."""

import json

import pytest

from harness.targets.board.manifest import (MANIFEST_FILE, Manifest, Package, Wheel, read_manifest,
                                            write_manifest)
from harness.targets.board.spec import BoardError, BoardSpec


def _manifest():
    return Manifest(BoardSpec("aarch64"), (Package("libc6", "2.36-9+deb12u10"),),
                    (Wheel("ai_edge_litert", "2.3.0", "ai_edge_litert-2.3.0-cp311-cp311-x.whl", "ab" * 32),
                     Wheel("numpy", "2.2.6", "numpy-2.2.6-cp311-cp311-x.whl", "cd" * 32)),
                    "2026-01-01T00:00:00+00:00", 12.5)


def test_round_trip_and_fields(tmp_path):
    m = _manifest()
    write_manifest(tmp_path, m)
    data = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert data["arch"] == "aarch64" and data["cache_key"] == BoardSpec("aarch64").cache_key()
    assert data["packages"] == [{"name": "libc6", "version": "2.36-9+deb12u10"}]
    assert data["wheels"][0] == {"name": "ai_edge_litert", "version": "2.3.0",
                                 "file": "ai_edge_litert-2.3.0-cp311-cp311-x.whl", "sha256": "ab" * 32}
    assert read_manifest(tmp_path) == m
    assert m.runtime_version() == "2.3.0"
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # no temporary file left


def test_missing_and_malformed(tmp_path):
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST_FILE).write_text('{"arch": "aarch64"}')
    with pytest.raises(BoardError, match="malformed"):
        read_manifest(tmp_path)
