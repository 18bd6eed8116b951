"""One job's lifecycle on a target, shared by every runner kind: push what is missing (content-
addressed, verified), let the runner run, pull and verify what it wrote.

Below the target's ``workdir``, ``cache/<sha256><suffix>`` holds every pushed file (models, test
inputs, runner files), so a test set is pushed once per device however many variants and delegates
run on it, and a rerun pushes nothing new. A large test set travels as shards (:func:`shards_of`:
views of at most ``[run] shard_samples`` rows, each its own inputs file named by its hash, written
and hashed as a stream); ``jobs/<job id>/`` holds each job (the runner kinds in
:mod:`harness.runners` say what goes there).

Every pushed file is checked by its sha256 on the device after the push (a copy already there is
hashed once per session, then trusted while its size and mtime stay the same); every pulled file is
trusted only if its bytes hash to what the runner recorded (``output.sha256``) or, for
result.json and runners that record nothing, to the device copy's sha256.

>>> remote = push_file(target, Path("int8.tflite"), sha, "model", ".tflite", transfer)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import posixpath
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ArtifactError, DatasetError, TargetError
from harness.logs import job_logger
from harness.paths import cache_dir
from harness.records import GroupedDataset, JobTransfer, ModelArtifact, row_chunks
from harness.targets.base import Target

log = logging.getLogger(__name__)
_INPUTS_FILES: "weakref.WeakKeyDictionary[GroupedDataset, tuple[Path, str]]" = weakref.WeakKeyDictionary()
_INPUTS_LOCK = threading.Lock()
# Device copies hashed in this target's session: remote -> (sha256, RemoteStat when hashed). A copy
# whose size and mtime still match is not hashed again (hashing a 100 MB test set on a phone takes
# seconds per job); a new session (a new Target) hashes it once more.
_VERIFIED: "weakref.WeakKeyDictionary[Target, dict[str, tuple[str, Any]]]" = weakref.WeakKeyDictionary()

BASE_TIMEOUT_S = 60.0          # interpreter start, runtime import and model load on a slow board
NPY_CHUNK_BYTES = 16 << 20     # inputs files are written and hashed this much at a time: memory stays flat
PER_SAMPLE_TIMEOUT_S = 0.2     # ~5 samples/s: a 16x8 MobileNet off XNNPACK on a slow board, with room


@dataclass
class Transfer:
    """Bytes and seconds spent moving files for one job (mutable while the job runs)."""

    pushed: dict[str, int] = field(default_factory=dict)
    bytes_pulled: int = 0
    push_s: float = 0.0
    pull_s: float = 0.0
    run_s: float = 0.0

    def snapshot(self) -> JobTransfer:
        """The counts so far as the job's frozen record (seconds rounded to the microsecond)."""
        return JobTransfer(bytes_pushed=sum(self.pushed.values()), bytes_pulled=self.bytes_pulled,
                           push_s=round(self.push_s, 6), run_s=round(self.run_s, 6),
                           pull_s=round(self.pull_s, 6), pushed=dict(self.pushed))


def default_timeout_s(n_samples: int) -> float:
    """How long a job may run before it counts as hung: grows with the number of samples."""
    return BASE_TIMEOUT_S + PER_SAMPLE_TIMEOUT_S * n_samples


def checked_model(artifact: ModelArtifact) -> Path:
    """The artifact's .tflite file, checked against its recorded sha256."""
    path = Path(artifact.path) if artifact.path is not None else None
    if path is None or not path.is_file():
        raise ArtifactError(f"variant {artifact.variant!r}: model file {path} does not exist")
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise ArtifactError(f"variant {artifact.variant!r}: {path} has sha256 {actual}, "
                            f"not the recorded {artifact.sha256} (changed on disk?)")
    return path


@dataclass(frozen=True, eq=False)
class Shard:
    """Rows ``start:stop`` of a test set (shard ``index`` of ``count``), as a dataset of its own.

    ``data``'s arrays are views of the test set's (slices, no copy). Compared by identity: the
    inputs file of a shard is written and hashed once per shard object (:func:`push_inputs`).
    """

    index: int
    count: int
    start: int
    stop: int
    data: GroupedDataset

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def sha256(self) -> str:
        """sha256 of the shard's inputs file (written to the host cache on first use)."""
        return _inputs_file(self.data)[1]


def shards_of(test: GroupedDataset, shard_samples: int) -> tuple[Shard, ...]:
    """``test`` cut into shards of at most ``shard_samples`` rows, in test-set order.

    A test set of at most ``shard_samples`` rows is one shard holding ``test`` itself.

    >>> [len(s) for s in shards_of(dataset_of_10_000_rows, 4096)]  # doctest: +SKIP
    [4096, 4096, 1808]
    """
    if shard_samples < 1:
        raise ValueError(f"shard_samples must be >= 1, got {shard_samples}")
    n = len(test)
    if n <= shard_samples:
        return (Shard(0, 1, 0, n, test),)
    bounds = list(range(0, n, shard_samples))
    return tuple(Shard(i, len(bounds), start, min(start + shard_samples, n), _rows(test, start, start + shard_samples))
                 for i, start in enumerate(bounds))


def _rows(test: GroupedDataset, start: int, stop: int) -> GroupedDataset:
    """Rows ``start:stop`` of ``test`` as read-only views (no copy)."""
    def view(a: np.ndarray) -> np.ndarray:
        v = a[start:stop]
        v.flags.writeable = False
        return v

    return dataclasses.replace(test, ids=view(test.ids), x=view(test.x), y=view(test.y),
                               group=view(test.group), split=view(test.split))


def push_inputs(target: Target, test: GroupedDataset, transfer: Transfer) -> tuple[str, str]:
    """Write test.x (storage dtype) once to the host cache and push it; returns (remote, sha256).

    ``test`` is a whole test set or one shard's rows (:attr:`Shard.data`)."""
    local, sha = _inputs_file(test)
    return push_file(target, local, sha, "inputs", ".npy", transfer), sha


def _inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    """The host cache file holding test.x as .npy, named by the sha256 of its bytes.

    Remembered per dataset object (datasets are frozen and their arrays read-only), so a sweep of
    many variants and delegates serializes and hashes the test set (or a shard) once, not once per job.
    """
    with _INPUTS_LOCK:  # a pool's members may ask for one shard at once: written once
        known = _INPUTS_FILES.get(test)
        if known is not None and known[0].is_file():
            return known
        made = _write_inputs_file(test)
        _INPUTS_FILES[test] = made
        return made


def reuse_inputs_file(test: GroupedDataset, sha: str) -> bool:
    """Take the host cache's ``<sha>.npy`` as ``test``'s inputs file, without writing or hashing it
    again, if it is there (True). For a caller that knows ``test`` holds the rows it was written from
    in this process: a Ray actor gets a new copy of a shard's rows with every job."""
    path = cache_dir("inputs") / f"{sha}.npy"
    if not path.is_file():
        return False
    with _INPUTS_LOCK:
        _INPUTS_FILES[test] = (path, sha)
    return True


def known_inputs_sha(test: GroupedDataset) -> str | None:
    """sha256 of ``test``'s inputs file if it was written (or reused) for this object, else None."""
    with _INPUTS_LOCK:
        known = _INPUTS_FILES.get(test)
    return None if known is None else known[1]


class _HashingWriter:
    """A write-only file that hashes what passes through it (numpy then writes in bounded chunks)."""

    def __init__(self, f):
        self.f, self.digest, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.f.write(data)


def _write_npy(out: _HashingWriter, x: np.ndarray) -> None:
    """The bytes ``np.save(np.ascontiguousarray(x))`` writes (format 1.0, C order), in chunks of
    ``NPY_CHUNK_BYTES`` (a view or memmap of any layout is never copied whole)."""
    if x.dtype.hasobject:
        raise ValueError("object arrays cannot be saved without pickling")
    header = np.lib.format.header_data_from_array_1_0(x)
    header["fortran_order"] = False
    np.lib.format.write_array_header_1_0(out, header)
    rows = max(1, NPY_CHUNK_BYTES // max(1, x[:1].nbytes))
    for _start, chunk in row_chunks(x, rows):  # a memory-mapped set's pages are handed back as it goes
        out.write(np.ascontiguousarray(chunk).tobytes())


def _write_inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    """Stream test.x as .npy (the bytes ``np.save`` writes) into the cache, hashing as it goes:
    numpy writes a non-file object in chunks of ~16 MB, so no copy of the whole set is made."""
    folder = cache_dir("inputs")
    tmp = folder / f".inputs-{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            out = _HashingWriter(f)
            _write_npy(out, test.x)
            f.flush()
            os.fsync(f.fileno())
        sha = out.digest.hexdigest()
        path = folder / f"{sha}.npy"
        if path.is_file() and path.stat().st_size == out.size:
            tmp.unlink()
        else:
            os.replace(tmp, path)  # named by its bytes: whoever renames last, the content is the same
    except ValueError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"dataset {test.name!r}: samples of dtype {test.x.dtype} cannot travel "
                           f"to a device: {exc}") from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"dataset {test.name!r}: cannot write its inputs file in {folder}: {exc}") from exc
    return path, sha


def push_file(target: Target, local: Path, sha: str, kind: str, suffix: str,
              transfer: Transfer) -> str:
    """Push ``local`` to <workdir>/cache/<sha><suffix> unless it is there; returns the remote path."""
    remote = posixpath.join(target.workdir, "cache", sha + suffix)
    transfer.pushed[kind] = transfer.pushed.get(kind, 0) + push_verified(target, local, sha, remote)
    return remote


def push_verified(target: Target, local: Path, sha: str, remote: str) -> int:
    """Push unless ``remote`` already holds these bytes; verify after a push. Returns bytes pushed."""
    size = local.stat().st_size
    existing = target.stat(remote)
    if existing is not None and _VERIFIED.get(target, {}).get(remote) == (sha, existing):
        return 0  # hashed earlier in this session, and its size and mtime have not moved since
    if existing is not None and existing.size_bytes == size and target.sha256(remote) == sha:
        _VERIFIED.setdefault(target, {})[remote] = (sha, existing)
        return 0
    target.mkdirs(posixpath.dirname(remote))
    target.push(local, remote)
    got = target.sha256(remote)
    if got != sha:
        raise TargetError(f"pushed {local} to {remote}, but the device copy has sha256 {got}, "
                          f"not {sha}", target.name)
    _VERIFIED.setdefault(target, {})[remote] = (sha, target.stat(remote))
    job_logger(log, target.name).debug("pushed %s (%d bytes)", remote, size)
    return size


def pull_verified(target: Target, remote: str, local: Path, sha: str | None,
                  transfer: Transfer) -> None:
    """Pull ``remote`` and trust it only if its bytes hash to ``sha`` (the runner's record) or,
    when the runner recorded none, to the device copy's own sha256."""
    target.pull(remote, local)
    transfer.bytes_pulled += local.stat().st_size
    expected = sha or target.sha256(remote)
    got = sha256_file(local)
    if got != expected:
        source = "the runner recorded" if sha else "the device copy has"
        raise TargetError(f"pulled {remote}, but the copy has sha256 {got}; {source} {expected}",
                          target.name)


def with_output(err: TargetError, output: str) -> TargetError:
    """Attach the runner's full output to an error (its message quotes only the tail)."""
    err.output = output
    return err


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
