"""harness/fsutil.py: the mode atomic_write gives the file it writes."""

from __future__ import annotations

import os
import stat

import pytest

from harness.fsutil import atomic_write, atomic_write_bytes, atomic_write_text


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_explicit_mode_is_the_new_files_and_overrides_the_replaced_files(tmp_path):
    key = tmp_path / "adbkey"
    atomic_write_bytes(key, b"private", mode=0o600)
    assert mode_of(key) == 0o600 and key.read_bytes() == b"private"
    os.chmod(key, 0o644)                     # an old key left readable by others
    atomic_write_text(key, "new", mode=0o600)
    assert mode_of(key) == 0o600 and key.read_text() == "new"
    atomic_write(tmp_path / "tool", lambda p: p.write_bytes(b"#!/bin/sh\n"), mode=0o755)
    assert mode_of(tmp_path / "tool") == 0o755
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_without_a_mode_the_replaced_files_mode_is_kept(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_text(path, "new")
    assert mode_of(path) == 0o640 and path.read_text() == "new"


def test_a_failing_write_leaves_the_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "f"
    atomic_write_text(path, "old", mode=0o600)

    def boom(_):
        raise RuntimeError("write failed")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom, mode=0o644)
    assert path.read_text() == "old" and mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
