"""harness/records: row_chunks over memory-mapped arrays, take() of a block, the streamed sha256."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import harness.records as records
from harness.records import GroupedDataset, Preprocess, row_chunks

MAPPED_MB = 32  # a file large enough that its resident pages are plain to see in smaps


def _mapping_rss_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


@pytest.fixture
def mapped(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (MAPPED_MB * 256, 4096), dtype=np.uint8))
    return path, np.load(path, mmap_mode="r")


def test_row_chunks_cover_every_row_in_order():
    a = np.arange(23).reshape(23, 1)
    chunks = list(row_chunks(a, rows=5))
    assert [s for s, _ in chunks] == [0, 5, 10, 15, 20]
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), a)
    rows = list(row_chunks(np.zeros((10, 1 << 20), np.uint8)))  # default: what fits in CHUNK_BYTES
    assert all(len(c) == records.CHUNK_BYTES >> 20 for _, c in rows[:-1])


def test_a_pass_over_a_mapped_file_leaves_its_pages_out_of_the_resident_set(mapped):
    path, x = mapped
    total = 0
    for _, chunk in row_chunks(x, rows=64):  # 256 KB a chunk, 128 of them
        total += int(chunk[:, 0].sum())
        assert _mapping_rss_kb(path) <= 4 * 1024  # a chunk and what the kernel maps around it, no more
    assert total == int(np.load(path)[:, 0].sum())
    np.asarray(x).sum()  # the same pass without row_chunks: the whole file stays resident
    assert _mapping_rss_kb(path) >= MAPPED_MB * 1024 * 0.9


def test_chunks_of_a_mapped_view_release_only_their_own_rows(mapped):
    path, x = mapped
    np.asarray(x[:256]).sum()  # rows outside the view: 1 MB resident
    for _ in row_chunks(x[1024:], rows=512):
        pass
    assert 1024 <= _mapping_rss_kb(path) <= 2 * 1024  # the head's MB is still there, the view's rows are not


def _dataset(x: np.ndarray, split: np.ndarray) -> GroupedDataset:
    n = len(x)
    return GroupedDataset(name="t", ids=np.array([f"id-{i}" for i in range(n)]), x=x, y=np.arange(n) % 3,
                          group=np.array(["a", "bb", "c"])[np.arange(n) % 3], split=split, num_classes=3,
                          preprocess=Preprocess(scale=0.5))


def test_a_split_stored_as_one_block_is_a_view_and_stays_mapped(mapped):
    _, x = mapped
    n = len(x)
    ds = _dataset(x, np.where(np.arange(n) < 100, "train", "test"))
    test = ds.subset("test")
    assert isinstance(test.x, np.memmap) and np.shares_memory(test.x, x) and len(test) == n - 100
    np.testing.assert_array_equal(test.ids[:2], ["id-100", "id-101"])
    mixed = ds.take(np.array([5, 3, 4]))  # not one ascending run: copied, in the order asked
    assert not np.shares_memory(mixed.x, x) and mixed.ids.tolist() == ["id-5", "id-3", "id-4"]
    assert not test.x.flags.writeable and not mixed.x.flags.writeable


def _whole_array_sha256(ds: GroupedDataset) -> str:
    """The hash as it was computed before it was streamed: whole arrays, joined and copied."""
    h = hashlib.sha256()
    for arr in (ds.ids.astype(str), ds.group.astype(str), ds.split.astype(str)):
        h.update("\x1f".join(arr.tolist()).encode())
    for arr in (ds.x, ds.y):
        a = np.ascontiguousarray(arr)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    h.update(repr(ds.preprocess).encode())
    return h.hexdigest()


def test_streamed_sha256_equals_the_whole_array_hash(monkeypatch):
    rng = np.random.default_rng(1)
    ds = _dataset(rng.integers(0, 256, (50, 3, 2), dtype=np.uint8), np.full(50, "test"))
    expected = _whole_array_sha256(ds)
    assert ds.sha256() == expected
    monkeypatch.setattr(records, "HASH_TEXT_ROWS", 7)
    monkeypatch.setattr(records, "CHUNK_BYTES", 30)  # 5 samples a chunk
    assert ds.sha256() == expected
    fortran = _dataset(np.asfortranarray(ds.x), ds.split)  # the C-order bytes, chunk by chunk too
    assert fortran.sha256() == expected


def test_drop_pages_hands_back_a_mapped_array_and_leaves_memory_alone(mapped):
    path, x = mapped
    np.asarray(x).sum()
    assert _mapping_rss_kb(path) >= MAPPED_MB * 1024 * 0.9
    records.drop_pages(x)
    assert _mapping_rss_kb(path) <= 64
    in_memory = np.arange(10)
    records.drop_pages(in_memory)  # nothing to hand back: the values stay
    assert in_memory.sum() == 45


def test_same_rows_compares_chunk_by_chunk(monkeypatch):
    monkeypatch.setattr(records, "CHUNK_BYTES", 8)
    a = np.array([f"id-{i}" for i in range(30)])
    assert records.same_rows(a, a) and records.same_rows(a, a.copy())
    changed = a.copy()
    changed[29] = "other"
    assert not records.same_rows(a, changed) and not records.same_rows(a, a[:-1])
