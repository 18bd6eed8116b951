"""Host FP32 reference: the Keras model's own logits for the test samples, the baseline of every comparison
(for a model given as a .tflite file: that file's outputs on LiteRT's reference kernels, cached here too).

Inputs are the stored samples with the dataset's preprocessing applied (float32), the same mapping the
device runner applies; rows of the result follow ``test.ids`` exactly. The logits are computed in
large batches by one compiled ``tf.function`` and cached, content-addressed, under
``<cache>/reference/<key>.npy``: the key hashes the model's sha256, the test set's sha256 (ids,
samples, labels, groups, preprocessing) and the TensorFlow/Keras versions, so a rerun that changes
only devices or delegates computes (and loads) nothing.

>>> ref = reference_logits(model, dataset.subset("test"))  # doctest: +SKIP
>>> ref.values.shape  # doctest: +SKIP
(719, 10)
>>> ref, hit = cached_reference_logits(lambda: model, model_sha256, test)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import paths
from harness.errors import ModelError
from harness.fsutil import atomic_write
from harness.records import GroupedDataset, Logits

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 512   # large batches amortize the per-call cost; 512 MobileNetV2 inputs fit any host
CACHE_SUB = "reference"    # sub-folder of the qskew cache
CACHE_FORMAT = 1           # bump when the stored logits change meaning; old entries are then ignored
RUNTIME_PACKAGES = ("tensorflow", "keras")  # what computes the logits (part of the key)


def reference_logits(model: Any, test: GroupedDataset, batch_size: int = DEFAULT_BATCH_SIZE) -> Logits:
    """FP32 logits [N, K] of ``model`` on ``test``, rows aligned with ``test.ids``."""
    x = test.preprocess.apply(test.x)
    try:
        values = _predict(model, x, batch_size)
    except Exception as exc:  # TensorFlow raises many types; translate once, here
        raise ModelError(f"model {model.name!r} failed on dataset {test.name!r}: {exc}") from exc
    if values.ndim != 2 or values.shape[0] != len(test):
        raise ModelError(f"model {model.name!r} returned shape {values.shape} for {len(test)} samples; "
                         "qskew needs logits [samples, classes]")
    return Logits(ids=test.ids, values=values)


def cached_reference_logits(load_model: Callable[[], Any], model_sha256: str, test: GroupedDataset,
                            cache_root: Path | None = None) -> tuple[Logits, bool]:
    """(logits, True) from the cache, else (computed with ``load_model()`` and stored, False)."""
    return cached_logits(model_sha256, lambda: reference_logits(load_model(), test).values, test, cache_root)


def cached_logits(model_key: str, compute: Callable[[], np.ndarray], test: GroupedDataset,
                  cache_root: Path | None = None) -> tuple[Logits, bool]:
    """(logits, True) from the cache entry of (``model_key``, ``test``), else (``compute()``,
    stored, False). ``model_key`` names the model and what computes its outputs: a model's sha256
    for the Keras reference; the .tflite's sha256 and the runtime for a .tflite's reference."""
    entry = (Path(cache_root) if cache_root is not None else paths.cache_dir(CACHE_SUB)) / \
        f"{reference_key(model_key, test)}.npy"
    values = _read(entry, len(test))
    if values is not None:
        return Logits(ids=test.ids, values=values), True
    ref = Logits(ids=test.ids, values=np.asarray(compute(), dtype=np.float32))
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(entry, lambda p: _save(p, ref.values), error=ModelError)
    return ref, False


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


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs on ``x``, through one traced graph for every batch (no Keras predict loop)."""
    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)
    forward = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    outs = []
    for start in range(0, len(x), batch_size):
        out = forward(tf.constant(x[start:start + batch_size]))
        if isinstance(out, dict) and len(out) == 1:
            out = next(iter(out.values()))
        outs.append(np.asarray(out, dtype=np.float32))
    if not outs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outs)


def _save(path: Path, values: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, values, allow_pickle=False)


def _read(entry: Path, n: int) -> np.ndarray | None:
    """The stored logits when complete and of the right length, else None (computed again)."""
    if not entry.is_file():
        return None
    try:
        values = np.load(entry, allow_pickle=False)
    except (OSError, ValueError) as exc:
        log.warning("cached reference %s is unreadable (%s); computing it again", entry, exc)
        return None
    if values.dtype != np.float32 or values.ndim != 2 or values.shape[0] != n:
        log.warning("cached reference %s has shape %s %s, not [%d, K] float32; computing it again",
                    entry, values.shape, values.dtype, n)
        return None
    return values
