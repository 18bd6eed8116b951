"""Host FP32 reference: the Keras model's own logits for the test samples, the baseline of every comparison
(for a model given as a .tflite file: that file's outputs on LiteRT's reference kernels, cached here too).

Inputs are the stored samples with the dataset's preprocessing applied (float32), the same mapping the
device runner applies; rows of the result follow ``test.ids`` exactly. The logits are computed in
large batches by one compiled ``tf.function``, the samples read and preprocessed a batch at a time
and the logits written to the cache file as they come (no copy of the whole set, in samples or in
logits, is held), and cached, content-addressed, under
``<cache>/reference/<key>.npy``: the key hashes the model's sha256, the test set's sha256 (ids,
samples, labels, groups, preprocessing) and the TensorFlow/Keras versions, so a rerun that changes
only devices or delegates computes (and loads) nothing. A cached entry is memory-mapped read-only,
not read: the stages that pass over it read it in chunks (``records.row_chunks``).

>>> ref = reference_logits(model, dataset.subset("test"))  # doctest: +SKIP
>>> ref.values.shape  # doctest: +SKIP
(719, 10)
>>> ref, hit = cached_reference_logits(lambda: model, model_sha256, test)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from harness import paths
from harness.errors import ModelError
from harness.fsutil import atomic_write
from harness.records import GroupedDataset, Logits, row_chunks

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 512   # large batches amortize the per-call cost; 512 MobileNetV2 inputs fit any host
CACHE_SUB = "reference"    # sub-folder of the qskew cache
CACHE_FORMAT = 1           # bump when the stored logits change meaning; old entries are then ignored
RUNTIME_PACKAGES = ("tensorflow", "keras")  # what computes the logits (part of the key)


def reference_logits(model: Any, test: GroupedDataset, batch_size: int = DEFAULT_BATCH_SIZE) -> Logits:
    """FP32 logits [N, K] of ``model`` on ``test``, rows aligned with ``test.ids``."""
    batches = list(reference_batches(model, test, batch_size))
    return Logits(ids=test.ids, values=np.concatenate(batches) if batches else np.zeros((0, 0), np.float32))


def reference_batches(model: Any, test: GroupedDataset, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
    """The FP32 logits of ``model`` on ``test``, batch after batch (float32 [rows, K] each, in test
    order): the samples are read and preprocessed one batch at a time (``records.row_chunks``), so
    no float copy of the whole set is made. Raises ModelError naming the model and the dataset."""
    try:
        forward = _forward(model, test.x.shape[1:])
    except Exception as exc:  # TensorFlow raises many types; translate once, here
        raise ModelError(f"model {model.name!r} failed on dataset {test.name!r}: {exc}") from exc
    rows, width = 0, None
    for _, chunk in row_chunks(test.x, batch_size):
        try:
            out = forward(test.preprocess.apply(chunk))
        except Exception as exc:
            raise ModelError(f"model {model.name!r} failed on dataset {test.name!r}: {exc}") from exc
        width = out.shape[1] if width is None and out.ndim == 2 else width
        if out.ndim != 2 or out.shape[0] != chunk.shape[0] or out.shape[1] != width:
            raise ModelError(f"model {model.name!r} returned shape {out.shape} for a batch of {chunk.shape[0]} "
                             "samples; qskew needs logits [samples, classes]")
        rows += out.shape[0]
        yield out
    if rows != len(test):
        raise ModelError(f"model {model.name!r} returned {rows} rows for {len(test)} samples")


def cached_reference_logits(load_model: Callable[[], Any], model_sha256: str, test: GroupedDataset,
                            cache_root: Path | None = None) -> tuple[Logits, bool]:
    """(logits, True) from the cache, else (computed with ``load_model()`` and stored, False)."""
    return cached_logits(model_sha256, lambda: reference_batches(load_model(), test), test, cache_root)


def cached_logits(model_key: str, compute: Callable[[], np.ndarray | Iterable[np.ndarray]], test: GroupedDataset,
                  cache_root: Path | None = None) -> tuple[Logits, bool]:
    """(logits, True) from the cache entry of (``model_key``, ``test``), else (``compute()``,
    stored, False). ``model_key`` names the model and what computes its outputs: a model's sha256
    for the Keras reference; the .tflite's sha256 and the runtime for a .tflite's reference.

    ``compute()`` returns the outputs whole or as batches in test order (written to the cache
    file as they come). Either way the logits returned are the cache file memory-mapped read-only,
    so the reference of a large test set is not held in memory (``records.row_chunks`` reads it)."""
    entry = (Path(cache_root) if cache_root is not None else paths.cache_dir(CACHE_SUB)) / \
        f"{reference_key(model_key, test)}.npy"
    values = _read(entry, len(test))
    if values is not None:
        return Logits(ids=test.ids, values=values), True
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(entry, lambda p: _save(p, compute(), len(test)), error=ModelError)
    values = _read(entry, len(test))
    if values is None:
        raise ModelError(f"the reference just stored in {entry} cannot be read back")
    return Logits(ids=test.ids, values=values), False


def reference_key(model_sha256: str, test: GroupedDataset) -> str:
    """The cache key of one model's reference on one test set (see the module docstring)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    payload = {"format": CACHE_FORMAT, "model_sha256": model_sha256, "test_sha256": test.sha256(),
               "preprocess": test.preprocess.to_json(), "versions": versions}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _forward(model: Any, sample_shape: tuple) -> Callable[[np.ndarray], np.ndarray]:
    """The model's outputs on a float32 batch, through one traced graph for every batch (no Keras predict loop)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(sample_shape), tf.float32)
    traced = tf.function(lambda t: model(t, training=False), input_signature=[spec])

    def forward(batch: np.ndarray) -> np.ndarray:
        out = traced(tf.constant(batch))
        if isinstance(out, dict) and len(out) == 1:
            out = next(iter(out.values()))
        return np.asarray(out, dtype=np.float32)
    return forward


def _save(path: Path, values: np.ndarray | Iterable[np.ndarray], n: int) -> None:
    """``values`` (whole, or batches of rows) as one float32 .npy [n, K], written batch by batch."""
    batches = iter([values]) if isinstance(values, np.ndarray) else iter(values)
    first = np.asarray(next(batches, np.zeros((0, 0), np.float32)), dtype=np.float32)
    width = first.shape[1] if first.ndim == 2 else 0
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                      "fortran_order": False, "shape": (n, width)})
        rows = 0
        for batch in itertools.chain([first], batches):
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if batch.ndim != 2 or batch.shape[1] != width:
                raise ModelError(f"reference outputs of shape {batch.shape} after rows of {width} values")
            handle.write(batch.data)
            rows += batch.shape[0]
    if rows != n:
        raise ModelError(f"the reference has {rows} rows for {n} test samples; qskew needs logits [samples, classes]")


def _read(entry: Path, n: int) -> np.ndarray | None:
    """The stored logits when complete and of the right length, else None (computed again)."""
    if not entry.is_file():
        return None
    try:
        values = np.load(entry, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        log.warning("cached reference %s is unreadable (%s); computing it again", entry, exc)
        return None
    if values.dtype != np.float32 or values.ndim != 2 or values.shape[0] != n:
        log.warning("cached reference %s has shape %s %s, not [%d, K] float32; computing it again",
                    entry, values.shape, values.dtype, n)
        return None
    return values
