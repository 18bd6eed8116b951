"""Frozen records passed between pipeline stages (see ARCHITECTURE.md).

Every stage takes and returns one of these; none of them is mutated after it is built. What a job
measured on a device (timings, transfer, execution plan, repeat noise) is in
:mod:`harness.records.device`, re-exported here. Records that hold numpy arrays use ``eq=False``
(array equality is not a bool) and are compared field by field in tests.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from harness.errors import DatasetError
from harness.records.device import (AcceleratorReport, CompilerOp, ExecutionPlan, JobTransfer, NodePlacement,
                                    Precision, RepeatNoise, Timings)

__all__ = ["SPLITS", "row_chunks", "same_rows", "drop_pages", "watch_file", "Preprocess", "GroupedDataset", "TensorIO", "CalibrationInfo", "ModelArtifact", "Logits",
           "DeviceRun", "Timings", "JobTransfer", "ExecutionPlan", "NodePlacement", "CompilerOp", "RepeatNoise",
           "Precision", "AcceleratorReport"]

SPLITS = ("train", "test")
DEFAULT_ATTRIBUTE = "group"   # the name of the one group attribute of a dataset that does not name its own
CHUNK_BYTES = 1 << 20        # bytes of rows read per step of a pass over a set: 1 MB, so the float64
                             # temporaries of a step stay a few MB however large the set
# A page fault on a mapped file also maps its neighbours already in the page cache (the kernel's
# fault-around, and whole large folios of up to 2 MB): pages just before a chunk, handed back with
# the chunk before, come back with it, so each release starts this far before its chunk (measured:
# 256 KB still left ~11 KB a chunk resident, 2 MB none).
FAULT_AROUND_BYTES = 2 << 20
HASH_TEXT_ROWS = 65_536      # ids / group labels joined per step when hashing (a few MB of text)
CROSS = "\u00d7"              # joins attribute names and values into intersections: "sex\u00d7race", "Female\u00d7Black"


@dataclass(frozen=True)
class Preprocess:
    """How stored samples become model inputs: ``float_x = stored * scale + offset``.

    Samples travel to devices in their storage dtype (uint8 images stay uint8); the runner applies
    this mapping, then quantizes to the model's input dtype if the model has integer inputs.
    """

    scale: float = 1.0
    offset: float = 0.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)

    def to_json(self) -> dict:
        return {"scale": float(self.scale), "offset": float(self.offset)}


@dataclass(frozen=True, eq=False)
class GroupedDataset:
    """A group-labelled dataset: one row per sample, all arrays of the same length N.

    Arrays may be read-only memory maps of the dataset file (``np.memmap``, see ``datasets.npz``);
    stages that pass over all rows read them with :func:`row_chunks`, so a large set is never copied.
    ids: unique sample ids (str); x: samples in storage dtype, shape [N, ...]; y: int64 class
    labels in [0, num_classes); group: group label per sample (str); split: "train" or "test".
    attributes: the names of the group attributes. One attribute (the default, named "group") keeps
    the group label as is; with several (e.g. ("sex", "race")) ``group`` holds each sample's cell,
    the values joined by "\u00d7" ("Female\u00d7Black"), and ``intersections`` says whether the cells
    are reported as a group attribute of their own (``harness.metrics.attributes``).
    """

    name: str
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    split: np.ndarray
    num_classes: int
    preprocess: Preprocess = field(default_factory=Preprocess)
    description: str = ""
    attributes: tuple[str, ...] = (DEFAULT_ATTRIBUTE,)
    intersections: bool = False

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, split: str) -> "GroupedDataset":
        """The rows of one split, as a dataset of its own."""
        return self.take(np.concatenate([start + np.flatnonzero(chunk == split)
                                         for start, chunk in row_chunks(self.split)] or [np.zeros(0, np.int64)]))

    def take(self, index: np.ndarray) -> "GroupedDataset":
        """The rows at ``index`` (in that order), as read-only arrays like every dataset's.

        Rows that form one ascending run (a split stored as one block) are taken as a slice, a view
        that copies nothing: a memory-mapped ``x`` stays memory-mapped."""
        index = np.asarray(index)
        if index.ndim == 1 and index.size and index.dtype.kind in "iu" and \
                int(index[-1]) - int(index[0]) + 1 == index.size and bool(np.all(np.diff(index) == 1)):
            index = slice(int(index[0]), int(index[-1]) + 1)
        return GroupedDataset(
            name=self.name, ids=_frozen(self.ids[index]), x=_frozen(self.x[index]), y=_frozen(self.y[index]),
            group=_frozen(self.group[index]), split=_frozen(self.split[index]), num_classes=self.num_classes,
            preprocess=self.preprocess, description=self.description, attributes=self.attributes,
            intersections=self.intersections,
        )

    @property
    def groups(self) -> list[str]:
        return list(self.group_counts())

    def group_counts(self) -> dict[str, int]:
        """Samples per group label, labels sorted (counted chunk by chunk)."""
        totals: dict[str, int] = {}
        for _, chunk in row_chunks(self.group):
            for name, count in zip(*np.unique(chunk, return_counts=True)):
                totals[str(name)] = totals.get(str(name), 0) + int(count)
        return dict(sorted(totals.items()))

    def sha256(self) -> str:
        """Content hash of ids, samples, labels, groups and splits (stable across runs).

        Read in chunks of rows (:func:`row_chunks`), so hashing holds one chunk at a time, not a
        copy of the set; the bytes hashed are those of the whole arrays, one after the other."""
        h = hashlib.sha256()
        for arr in (self.ids, self.group, self.split):
            for start, chunk in row_chunks(arr, HASH_TEXT_ROWS):
                h.update((("\x1f" if start else "") + "\x1f".join(chunk.astype(str).tolist())).encode())
        for arr in (self.x, self.y):
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            for _, chunk in row_chunks(arr):
                h.update(np.ascontiguousarray(chunk).data)
        h.update(repr(self.preprocess).encode())
        if self.attributes != (DEFAULT_ATTRIBUTE,) or self.intersections:  # one-attribute datasets keep their old hash
            h.update(repr((self.attributes, self.intersections)).encode())
        return h.hexdigest()


def row_chunks(a: np.ndarray, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, a[start:start + rows])`` over the rows of ``a``, chunk after chunk.

    ``rows`` defaults to what fits in ``CHUNK_BYTES``. For an array memory-mapped read-only from a
    file (``np.load(..., mmap_mode="r")``, the ``.npz`` reader), the chunk is a copy and the pages
    it was read from are handed back to the kernel after each step (``madvise(MADV_DONTNEED)``;
    they stay in the page cache): mapped pages that were read count in the process's resident
    memory until then, so a pass over a 3 GB file would otherwise leave 3 GB resident.

    >>> [(s, c.tolist()) for s, c in row_chunks(np.arange(5), rows=2)]
    [(0, [0, 1]), (2, [2, 3]), (4, [4])]
    """
    n = int(a.shape[0]) if a.ndim else 0
    if rows is None:
        row_bytes = max(1, a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
        rows = max(1, CHUNK_BYTES // row_bytes)
    mapped = _read_only_mmap(a)
    for start in range(0, n, rows):
        part = a[start:start + rows]
        if mapped is None:
            yield start, part
            continue
        _check_unchanged(mapped)
        copy = np.array(part)
        _release(mapped, part)
        yield start, copy


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """``np.array_equal(a, b)`` read chunk by chunk (True at once when they are the same array)."""
    if a is b:
        return True
    if a.shape != b.shape:
        return False
    return all(np.array_equal(x, y) for (_, x), (_, y) in zip(row_chunks(a), row_chunks(b)))


def drop_pages(a: np.ndarray) -> None:
    """Hand the pages of ``a`` back to the kernel when it is a read-only file mapping (e.g. after a
    whole-array check when a dataset loads); nothing for arrays in memory."""
    mapped = _read_only_mmap(a)
    if mapped is not None:
        _release(mapped, a)


def watch_file(a: np.ndarray, handle) -> None:
    """Have every :func:`row_chunks` pass over ``a`` (mapped read-only from the open file
    ``handle``) check first that the file was not rewritten since (its size and modification time).

    A mapping shows the file's bytes as they are now: a dataset file written again in place while
    a run reads it would give the run other samples than those it hashed (its sha256) and, cut
    shorter, kill the process with SIGBUS at the first page past its end. The pass raises one
    DatasetError naming the file instead (a file replaced by a rename is not a change: the mapping
    keeps the old one)."""
    mapped = _read_only_mmap(a)
    if mapped is None or mapped in _WATCHED:
        return
    fd = os.dup(handle.fileno())  # the mapped file itself, whatever its path names later
    st = os.fstat(fd)
    _WATCHED[mapped] = (fd, (st.st_size, st.st_mtime_ns), str(getattr(handle, "name", fd)))
    weakref.finalize(mapped, os.close, fd)


# read-only mappings of files that must not change under them (watch_file): fd, (size, mtime), name
_WATCHED: "weakref.WeakKeyDictionary[mmap.mmap, tuple[int, tuple[int, int], str]]" = weakref.WeakKeyDictionary()


def _check_unchanged(mapped: "mmap.mmap") -> None:
    watched = _WATCHED.get(mapped)
    if watched is None:
        return
    fd, seen, name = watched
    st = os.fstat(fd)
    if (st.st_size, st.st_mtime_ns) != seen:
        raise DatasetError(f"{name} was written again while qskew read it (its size or modification time "
                           "changed; its arrays are memory-mapped, not copied): the run's samples would no "
                           "longer be those it hashed. Write a new file and rename it over the old one "
                           "(a run keeps reading the old one), or wait for the run to end; then run again")


def _read_only_mmap(a: np.ndarray) -> "mmap.mmap | None":
    """The read-only file mapping under ``a`` (np.memmap mode "r"), else None."""
    obj: Any = a
    while obj is not None:
        if isinstance(obj, np.memmap) and getattr(obj, "_mmap", None) is not None:
            return obj._mmap if obj.mode == "r" else None
        obj = getattr(obj, "base", None)
    return None


def _release(mapped: "mmap.mmap", part: np.ndarray) -> None:
    """Drop ``part``'s pages from this process's resident set (read-only file pages: nothing is lost)."""
    if not hasattr(mapped, "madvise") or not part.nbytes or not (part.flags.c_contiguous or part.flags.f_contiguous):
        return  # a strided view spans more than its bytes: left resident rather than guessed
    origin = np.frombuffer(mapped, np.uint8, count=1).ctypes.data
    start = part.ctypes.data - origin
    low = max(0, start - start % mmap.PAGESIZE - FAULT_AROUND_BYTES)
    mapped.madvise(mmap.MADV_DONTNEED, low, min(len(mapped), start + part.nbytes) - low)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class TensorIO:
    """One input or output tensor of a .tflite model as the runtime reports it."""

    name: str
    index: int
    dtype: str                      # numpy dtype name: "float32", "int8", "int16", "uint8"
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dynamic dimension
    scale: float                    # 0.0 when not quantized
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape_signature) and self.shape_signature[0] == -1

    def to_json(self) -> dict:
        return {"name": self.name, "index": self.index, "dtype": self.dtype,
                "shape": list(self.shape), "shape_signature": list(self.shape_signature),
                "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class CalibrationInfo:
    """The representative dataset used by a static-quantization variant."""

    size: int
    strategy: str                   # "random", "proportional" (stratified by group) or "balanced"
    seed: int
    group_shares: Mapping[str, float]
    sha256: str

    def to_json(self) -> dict:
        return {"size": self.size, "strategy": self.strategy, "seed": self.seed,
                "group_shares": dict(self.group_shares), "sha256": self.sha256}


@dataclass(frozen=True)
class ModelArtifact:
    """One converted variant: a .tflite file and what its I/O looks like.

    ``error`` is set (and ``path`` may be None) when the variant failed to convert or prepare; the
    pipeline records it and goes on with the other variants.
    """

    variant: str
    path: Path | None
    sha256: str | None
    size_bytes: int
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    recipe: Mapping[str, Any]
    calibration: CalibrationInfo | None = None
    error: str | None = None
    error_detail: str | None = None  # the converter's whole text when ``error`` holds only its first lines

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"variant": self.variant, "path": str(self.path) if self.path else None,
                "sha256": self.sha256, "size_bytes": self.size_bytes,
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs],
                "recipe": dict(self.recipe),
                "calibration": self.calibration.to_json() if self.calibration else None,
                "error": self.error}


@dataclass(frozen=True, eq=False)
class Logits:
    """Float logits for a set of samples, rows aligned with ``ids``. ``outputs`` says what the
    model's outputs are: ``"logits"``, or ``"probabilities"`` for a model that ends in a softmax or
    sigmoid (then a loss takes their logarithm, ``harness.metrics.compare``)."""

    ids: np.ndarray
    values: np.ndarray  # float32 [N, K]
    outputs: str = "logits"


@dataclass(frozen=True, eq=False)
class DeviceRun:
    """The outcome of running one variant on one target with one delegate.

    ``logits`` are dequantized float32 [N, K] rows aligned with the dataset's test ids, or None when
    the job failed (then ``error`` says why). ``raw`` keeps the outputs as the device wrote them.
    """

    variant: str
    target: str
    delegate: str
    artifact_sha256: str | None
    logits: np.ndarray | None
    raw: np.ndarray | None = None
    runtime: str = ""
    runtime_version: str = ""
    delegate_applied: str = ""
    batch_size: int = 0
    # what the job measured (harness.records.device); None when nothing was measured (a job that
    # failed before it ran, a failure recorded by the run directory)
    timings: Timings | None = None
    target_properties: Mapping[str, Any] = field(default_factory=dict)
    transfer: JobTransfer | None = None     # bytes and seconds moved; content on the device counts 0
    error: str | None = None
    execution_plan: ExecutionPlan | None = None  # what the interpreter really delegated
    # when the job ran several times ([run] repeat): the device's run-to-run noise; None for one run
    repeats: RepeatNoise | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def latency_ms_per_sample(self) -> float | None:
        """Invoke time per sample in ms: ``timings.latency_ms_per_sample`` if the on-device stage
        set it, else the runner's per-batch invoke seconds ``per_batch_s`` summed over the number
        of samples; None if neither is there (e.g. a failed job)."""
        t = self.timings or Timings()
        if t.latency_ms_per_sample is not None:
            return float(t.latency_ms_per_sample)
        per_batch = t.per_batch_s
        n = 0 if self.logits is None else len(self.logits)
        if per_batch and n:
            return 1000.0 * float(sum(per_batch)) / n
        return None
