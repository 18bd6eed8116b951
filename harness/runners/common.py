"""What every runner kind shares: the batch rule, splitting the outputs a device wrote, dequantizing.

Both kinds batch the test set the same way (the device runner's rule, ``device_runner.run.choose_batch``:
``batch_size`` samples for a dynamic batch dimension, the model's own batch otherwise, the last
batch padded), and both turn raw outputs into float32 logits with the output's scale and zero
point, so a job gives the same logits whichever kind ran it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.records import DeviceRun, GroupedDataset, ModelArtifact, TensorIO

SHOWN_IDS = 5  # sample ids an error message names


@dataclass(frozen=True)
class Batch:
    """One invocation: samples [start, start + count) fed as a tensor of ``fed`` rows."""

    index: int
    start: int
    count: int
    fed: int
    sha256: str
    path: Path | None  # the batch's raw file in the host cache


def choose_batch(tin: TensorIO, wanted: int, n_samples: int) -> tuple[int, bool]:
    """(batch size, dynamic?): ``wanted`` (at most n) for a -1 batch dimension, else the model's."""
    from device_runner.run import choose_batch as runner_choice  # the Python runner's rule

    return runner_choice({"shape_signature": list(tin.shape_signature or tin.shape)}, wanted, n_samples)


def output_layout(outputs: Sequence[TensorIO], dynamic: bool, fed: int) -> list[tuple[int, ...]]:
    """Each output's shape for a batch of ``fed`` rows (a -1 batch dimension becomes ``fed``)."""
    shapes = []
    for out in outputs:
        signature = out.shape_signature or out.shape
        if dynamic and signature and signature[0] == -1:
            shapes.append((fed,) + tuple(out.shape[1:]))
        else:
            shapes.append(tuple(out.shape))
    return shapes


def expected_bytes(outputs: Sequence[TensorIO], dynamic: bool, batches: Sequence[Batch]) -> int:
    """How many bytes every batch's outputs take, concatenated."""
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(out.dtype).itemsize
               for b in batches for out, shape in zip(outputs, output_layout(outputs, dynamic, b.fed)))


def split_outputs(data: bytes, outputs: Sequence[TensorIO], dynamic: bool,
                  batches: Sequence[Batch]) -> list[np.ndarray]:
    """Split concatenated outputs (per batch: every output tensor, in output order) into one array
    per output.

    An output whose first dimension is the batch comes back as [N, ...] (padding rows dropped);
    any other output as [batches, ...]. Raises ValueError when the byte count does not match.
    """
    expected = expected_bytes(outputs, dynamic, batches)
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes, but the model's {len(outputs)} output(s) take {expected} "
                         f"bytes for {len(batches)} batch(es)")
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    offset = 0
    for b in batches:
        for k, (out, shape) in enumerate(zip(outputs, output_layout(outputs, dynamic, b.fed))):
            dtype = np.dtype(out.dtype)
            count = int(np.prod(shape, dtype=np.int64))
            array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += count * dtype.itemsize
            parts[k].append(array[:b.count] if shape and shape[0] == b.fed else array)
    return [_join(p, batches) for p in parts]


def _join(pieces: list[np.ndarray], batches: Sequence[Batch]) -> np.ndarray:
    """Batch-major pieces are concatenated to [N, ...]; others are stacked to [batches, ...]."""
    if all(p.ndim and p.shape[0] == b.count for p, b in zip(pieces, batches)):
        return np.concatenate(pieces)
    return np.stack(pieces)


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw output values -> float32 logits: real = (q - zero_point) * scale for integer outputs;
    a float output is already real and is never rescaled, whatever scale a device reports."""
    if scale == 0.0 or raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)  # float32 already: the same array, not a second copy
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def class_count_problem(raw: np.ndarray, test: GroupedDataset) -> str | None:
    """The job's error when [N, K] outputs do not have one value per class of ``test``, else None."""
    if raw.shape[1] != test.num_classes:
        return (f"output: model gives {raw.shape[1]} values per sample but dataset {test.name!r} has "
                f"{test.num_classes} classes")
    return None


def nonfinite_problem(logits: np.ndarray, test: GroupedDataset) -> str | None:
    """The job's error (stage ``outputs``) when some logits are NaN or infinite, else None: such a
    sample has no prediction and no loss, and scoring it would fake a number. Names the samples
    and counts them per group."""
    bad = ~np.isfinite(logits).reshape(len(logits), -1).all(axis=1)
    if not bad.any():
        return None
    groups, counts = np.unique(np.asarray(test.group)[bad], return_counts=True)
    per_group = ", ".join(f"{g}: {c}" for g, c in zip(groups.tolist(), counts.tolist()))
    first = ", ".join(repr(str(i)) for i in np.asarray(test.ids)[bad][:SHOWN_IDS].tolist())
    return (f"outputs: {int(bad.sum())} of {len(logits)} samples have NaN or infinite logits "
            f"(per group: {per_group}; first ids: {first})")


def failed_run(target, artifact: ModelArtifact, delegate: str, error: str, runtime: str = "") -> DeviceRun:
    """A job that failed before anything ran on ``target``: nothing measured, ``error`` says why."""
    return DeviceRun(variant=artifact.variant, target=target.name, delegate=delegate,
                     artifact_sha256=artifact.sha256, logits=None, runtime=runtime, error=error)
