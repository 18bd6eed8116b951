"""harness/farm/shards.py ShardAssembly: a job's shards spilled to a scratch file and joined as one mapping."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from harness.errors import QskewError
from harness.farm import shards as shards_module
from harness.farm.shards import ShardAssembly, ShardResult, combine
from harness.paths import cache_dir
from harness.records import DeviceRun, row_chunks

JOB = ("int8", "pool", "xnnpack")
SIZES = (5, 5, 3)
STARTS = (0, 5, 10)


def _result(index: int, width: int = 4) -> ShardResult:
    n = SIZES[index]
    logits = np.random.default_rng(index).normal(size=(n, width)).astype(np.float32)
    return ShardResult({"index": index, "sha256": f"{index}" * 64, "n": n, "device": f"d{index}"},
                       DeviceRun(*JOB, artifact_sha256="a", logits=logits, runtime="litert"), {})


def _scratch_fds() -> list[str]:
    """This process's open files in the scratch folder (unlinked ones included)."""
    folder = str(cache_dir("scratch"))
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return [link for link in links if link.startswith(folder)]


def test_spilled_shards_join_bit_for_bit_into_one_read_only_mapping():
    assembly = ShardAssembly(3, STARTS, sum(SIZES))
    assert assembly.add(JOB, _result(2)) is None and assembly.add(JOB, _result(0)) is None
    parts = assembly.add(JOB, _result(1))
    logits = combine(parts).logits
    expected = np.concatenate([_result(i).run.logits for i in range(3)])
    assert logits.tobytes() == expected.tobytes()
    assert isinstance(logits, np.memmap) and not logits.flags.writeable  # one mapping of the scratch file
    assert np.concatenate([c for _, c in row_chunks(logits, 4)]).tobytes() == expected.tobytes()
    assert os.listdir(cache_dir("scratch")) == []  # the file has no name: nothing to clean after a crash


def test_a_short_write_is_written_on_until_all_rows_are_in(monkeypatch):
    real = os.pwrite
    monkeypatch.setattr(shards_module.os, "pwrite", lambda fd, data, offset: real(fd, bytes(data)[:7], offset))
    assembly = ShardAssembly(3, STARTS, sum(SIZES))
    for i in (0, 1):
        assembly.add(JOB, _result(i))
    logits = combine(assembly.add(JOB, _result(2))).logits
    assert logits.tobytes() == np.concatenate([_result(i).run.logits for i in range(3)]).tobytes()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are counted in /proc/self/fd")
def test_failed_and_unfinished_jobs_leave_no_scratch_file_open():
    assembly = ShardAssembly(3, STARTS, sum(SIZES))
    before = len(_scratch_fds())
    assembly.add(JOB, _result(0))
    other = ("fp32", "pool", "xnnpack")
    assembly.add(other, _result(1))
    assert len(_scratch_fds()) == before + 2
    assert assembly.fail(JOB) and len(_scratch_fds()) == before + 1
    assembly.close()  # the sweep ended with ``other`` incomplete (its shards stay staged for a resume)
    assert len(_scratch_fds()) == before and assembly.have(other) == set()


def test_a_scratch_folder_that_cannot_take_the_logits_is_one_error_naming_it(monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shards_module.os, "pwrite", full)
    assembly = ShardAssembly(3, STARTS, sum(SIZES))
    with pytest.raises(QskewError, match="No space left") as info:
        assembly.add(JOB, _result(0))
    assert str(cache_dir("scratch")) in str(info.value) and "int8/pool/xnnpack" in str(info.value)
    assembly.close()
