"""One job's lifecycle on a target, shared by every runner kind: push what is missing (content-
addressed, verified), let the runner run, pull and verify what it wrote.

Below the target's ``workdir``, ``cache/<sha256><suffix>`` holds every pushed file (models, test
inputs, runner files), so a test set is pushed once per device however many variants and delegates
run on it, and a rerun pushes nothing new; ``jobs/<job id>/`` holds each job (the runner kinds in
:mod:`harness.runners` say what goes there).

Every pushed file is checked by its sha256 on the device after the push (a copy already there is
hashed once per session, then trusted while its size and mtime stay the same); every pulled file is
trusted only if its bytes hash to what the runner recorded (``output.sha256``) or, for
result.json and runners that record nothing, to the device copy's sha256.

>>> remote = push_file(target, Path("int8.tflite"), sha, "model", ".tflite", transfer)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ArtifactError, DatasetError, TargetError
from harness.fsutil import atomic_write_bytes
from harness.logs import job_logger
from harness.paths import cache_dir
from harness.records import GroupedDataset, JobTransfer, ModelArtifact
from harness.targets.base import Target

log = logging.getLogger(__name__)
_INPUTS_FILES: "weakref.WeakKeyDictionary[GroupedDataset, tuple[Path, str]]" = weakref.WeakKeyDictionary()
# Device copies hashed in this target's session: remote -> (sha256, RemoteStat when hashed). A copy
# whose size and mtime still match is not hashed again (hashing a 100 MB test set on a phone takes
# seconds per job); a new session (a new Target) hashes it once more.
_VERIFIED: "weakref.WeakKeyDictionary[Target, dict[str, tuple[str, Any]]]" = weakref.WeakKeyDictionary()

BASE_TIMEOUT_S = 60.0          # interpreter start, runtime import and model load on a slow board
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


def push_inputs(target: Target, test: GroupedDataset, transfer: Transfer) -> tuple[str, str]:
    """Write test.x (storage dtype) once to the host cache and push it; returns (remote, sha256)."""
    local, sha = _inputs_file(test)
    return push_file(target, local, sha, "inputs", ".npy", transfer), sha


def _inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    """The host cache file holding test.x as .npy, named by the sha256 of its bytes.

    Remembered per dataset object (datasets are frozen and their arrays read-only), so a sweep of
    many variants and delegates serializes and hashes the test set once, not once per job.
    """
    known = _INPUTS_FILES.get(test)
    if known is not None and known[0].is_file():
        return known
    made = _write_inputs_file(test)
    _INPUTS_FILES[test] = made
    return made


def _write_inputs_file(test: GroupedDataset) -> tuple[Path, str]:
    buf = io.BytesIO()
    try:
        np.save(buf, np.ascontiguousarray(test.x), allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"dataset {test.name!r}: samples of dtype {test.x.dtype} cannot travel "
                           f"to a device: {exc}") from exc
    data = buf.getbuffer()
    sha = hashlib.sha256(data).hexdigest()
    path = cache_dir("inputs") / f"{sha}.npy"
    if not path.is_file() or path.stat().st_size != len(data):
        atomic_write_bytes(path, bytes(data))
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
