"""Train a built-in model on a dataset's train split, or load it from the host cache.

A trained model is cached as ``<cache>/models/<key>.keras`` with a ``<key>.json`` beside it
(history, training time, what went into the key). The key hashes everything that changes the
weights: the dataset's sha256, the model's name, its recipe, the source of its definition module,
the seed and the Keras/TensorFlow versions. Training is deterministic: Keras's global seed is set
and TensorFlow's op determinism is enabled (process-wide) before the model is built.

>>> from harness import datasets
>>> trained = train_or_load("small_cnn", datasets.load("digits-groups"))  # doctest: +SKIP
>>> trained.from_cache, trained.path.name  # doctest: +SKIP
(False, '3f1c...keras')
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import models
from harness.errors import DatasetError, ModelError
from harness.paths import cache_dir as default_cache_dir
from harness.records import GroupedDataset
from models.spec import TrainRecipe

log = logging.getLogger(__name__)

CACHE_SUB = "models"        # sub-folder of the qskew cache for trained models
CACHE_FORMAT = 1            # bump when the cached files change shape; old entries are then ignored
KEY_HEX_CHARS = 20          # 80 bits of the sha256: collision-free for any realistic cache


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained (or cached) built-in model and where it lives."""

    model: Any                              # keras.Model, logits out
    path: Path                              # the cached .keras file
    cache_key: str
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch loss/accuracy
    train_s: float = 0.0                    # wall time of the training that produced it
    from_cache: bool = False


def train_or_load(name: str, dataset: GroupedDataset, seed: int = 0, cache_dir: Path | None = None,
                  progress: bool = True, recipe: TrainRecipe | None = None) -> TrainedModel:
    """The model ``name`` trained on ``dataset``'s train split with ``seed``; cached across runs.

    ``cache_dir`` defaults to ``harness.paths.cache_dir("models")``; ``recipe`` overrides the
    model's registered recipe (e.g. fewer epochs for a smoke test) and is part of the cache key.
    """
    spec = models.get(name)
    recipe = recipe or spec.recipe
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(CACHE_SUB)
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(name, dataset, seed, recipe)
    path, meta_path = folder / f"{key}.keras", folder / f"{key}.json"
    cached = _load_cached(path, meta_path)
    if cached is not None:
        return cached
    train = dataset.subset("train")
    if len(train) == 0:
        raise DatasetError(f"dataset {dataset.name!r} has no train split; built-in models train on it")
    model, history, train_s = _fit(spec, recipe, train, dataset.num_classes, seed, progress)
    _save(model, path)
    meta = {"format": CACHE_FORMAT, "model": name, "seed": seed, "dataset": dataset.name,
            "dataset_sha256": dataset.sha256(), "recipe": recipe.to_json(),
            "history": history, "train_s": train_s, **_versions()}
    meta_path.write_text(json.dumps(meta, indent=2))
    log.info("trained %s on %s in %.1f s -> %s", name, dataset.name, train_s, path)
    return TrainedModel(model, path, key, history, train_s, from_cache=False)


def cached_model_path(name: str, dataset: GroupedDataset, seed: int = 0, cache_dir: Path | None = None,
                      recipe: TrainRecipe | None = None) -> Path | None:
    """The cached ``.keras`` file of ``name`` trained on ``dataset`` with ``seed``, or None; loads nothing."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(CACHE_SUB)
    path = folder / f"{cache_key(name, dataset, seed, recipe)}.keras"
    return path if path.is_file() else None


def cache_key(name: str, dataset: GroupedDataset, seed: int, recipe: TrainRecipe | None = None) -> str:
    """Hash of everything that determines the trained weights."""
    spec = models.get(name)
    definition = inspect.getsource(sys.modules[spec.build.__module__])
    parts = {"format": CACHE_FORMAT, "model": name, "recipe": (recipe or spec.recipe).to_json(), "seed": int(seed),
             "dataset_sha256": dataset.sha256(),
             "definition_sha256": hashlib.sha256(definition.encode()).hexdigest(), **_versions()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:KEY_HEX_CHARS]


def _versions() -> dict[str, str]:
    """Keras and TensorFlow versions from package metadata: importing them to ask takes seconds."""
    from importlib.metadata import version

    return {"keras": version("keras"), "tensorflow": version("tensorflow")}


def _load_cached(path: Path, meta_path: Path) -> TrainedModel | None:
    """The cached model, or None when absent or unreadable (then it is trained again)."""
    if not path.is_file():
        return None
    import keras

    try:
        model = keras.saving.load_model(path)
    except Exception as exc:  # a truncated or foreign file: retrain rather than fail
        log.warning("cached model %s is unreadable (%s); training again", path, exc)
        return None
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            log.warning("cache metadata %s is unreadable; history not available", meta_path)
    return TrainedModel(model, path, path.stem, meta.get("history", {}), float(meta.get("train_s", 0.0)),
                        from_cache=True)


def _fit(spec: models.ModelSpec, recipe: TrainRecipe, train: GroupedDataset, num_classes: int, seed: int,
         progress: bool) -> tuple[Any, dict[str, list[float]], float]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x, y = train.preprocess.apply(train.x), train.y
    started = time.perf_counter()
    try:
        model = spec.build(tuple(train.x.shape[1:]), num_classes, seed)
        optimizer = keras.optimizers.get({"class_name": recipe.optimizer,
                                          "config": {"learning_rate": recipe.learning_rate}})
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        fit = model.fit(x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, shuffle=True, verbose=0,
                        callbacks=[_progress_callback(spec.name, recipe.epochs, progress)])
    except Exception as exc:  # TensorFlow raises many types; translate once, here
        raise ModelError(f"model {spec.name!r} failed to train on {train.name!r}: {exc}") from exc
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return model, history, time.perf_counter() - started


def _progress_callback(name: str, epochs: int, progress: bool):
    """A Keras callback that drives a per-epoch tqdm bar on stderr (silent unless a TTY)."""
    import keras
    from tqdm.auto import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc=f"training {name}", unit="epoch",
                            disable=not (progress and sys.stderr.isatty()), leave=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.set_postfix(loss=f"{logs.get('loss', np.nan):.3f}", acc=f"{logs.get('accuracy', np.nan):.3f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def _save(model: Any, path: Path) -> None:
    """Write atomically: a crash mid-save must not leave a truncated cache entry behind.

    Keras names the format by the file's suffix, so the model is saved as ``model.keras`` in a
    temporary folder first and its bytes then replace ``path`` through ``harness.fsutil``.
    """
    import shutil
    import tempfile

    from harness.fsutil import atomic_write

    with tempfile.TemporaryDirectory(prefix=".qskew-save-", dir=path.parent) as tmp:
        saved = Path(tmp) / "model.keras"
        try:
            model.save(saved)
        except OSError as exc:
            raise ModelError(f"cannot write the trained model to {path}: {exc}") from exc
        atomic_write(path, lambda out: shutil.copyfile(saved, out), error=ModelError)
