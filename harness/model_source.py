"""The FP32 model under test, known by its file's bytes so that a cached run never loads it.

A model's identity (the variant cache's fingerprint, the manifest's sha256, the sample shape and
the number of classes) is derived from the Keras model once and cached under
``<cache>/model-facts/<key>.json``, where the key hashes the model file's bytes (a ``.keras`` file,
or every file of a SavedModel folder) and the TensorFlow/Keras versions that read them. With the
facts cached and every variant and the reference cached too, a run imports no TensorFlow at all:
:class:`ModelSource` loads the model only when something really needs it (a conversion, the
reference, training).

>>> source = ModelSource.from_file(Path("my_model.keras"), load, {"source": "file"})  # doctest: +SKIP
>>> source.facts.fingerprint[:8], source.facts.input_shape  # doctest: +SKIP
('3f1c0a9e', (8, 8, 1))
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from harness import paths
from harness.errors import ModelError
from harness.fsutil import atomic_write_text

log = logging.getLogger(__name__)

FACTS_SUB = "model-facts"      # sub-folder of the qskew cache
FACTS_FORMAT = 1               # bump when the facts' fields change meaning; old entries are then ignored
HASH_CHUNK_BYTES = 1 << 20     # model files can be large: hash them in 1 MiB chunks
READER_PACKAGES = ("tensorflow", "keras")  # what turns the file's bytes into a model (part of the key)


@dataclass(frozen=True)
class ModelFacts:
    """What the pipeline needs to know about a model without loading it."""

    fingerprint: str          # harness.quantize.cache.model_fingerprint: the variants' cache key
    sha256: str               # harness.modelio.model_sha256: recorded in the manifest, keys the reference
    input_shape: tuple        # one sample's shape, None for any size
    num_classes: int

    def to_json(self) -> dict:
        return {"format": FACTS_FORMAT, "fingerprint": self.fingerprint, "sha256": self.sha256,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes}


@dataclass(frozen=True, eq=False)
class ModelSource:
    """The FP32 model under test and where it came from (``description`` goes into the manifest).

    ``loaded`` is the keras.Model when the caller has it already; else ``load()`` makes it the first
    time :attr:`model` is read. ``file`` (the model's file or SavedModel folder) lets :attr:`facts`
    come from the cache without loading anything.
    """

    loaded: Any                                   # keras.Model, or None until first needed
    description: Mapping[str, Any]                # name/path, sha256, cache key, training facts
    load: Callable[[], Any] | None = None
    file: Path | None = None

    @functools.cached_property
    def model(self) -> Any:
        if self.loaded is not None:
            return self.loaded
        if self.load is None:
            raise ModelError(f"model source {dict(self.description)} has neither a model nor a loader")
        log.info("loading the FP32 model (%s)", self.description.get("path") or self.description.get("name"))
        return self.load()

    @functools.cached_property
    def facts(self) -> ModelFacts:
        """The model's facts: from the cache when ``file`` is known, else from the loaded model."""
        if self.file is None:
            return facts_of(self.model)
        return cached_facts(self.file, lambda: self.model)


def cached_facts(file: Path, load: Callable[[], Any], cache_root: Path | None = None) -> ModelFacts:
    """The facts of the model stored in ``file``; computed (loading the model) only on a miss."""
    entry = (Path(cache_root) if cache_root is not None else paths.cache_dir(FACTS_SUB)) / f"{facts_key(file)}.json"
    found = _read(entry)
    if found is not None:
        return found
    facts = facts_of(load())
    entry.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(entry, json.dumps(facts.to_json(), indent=2, sort_keys=True), error=ModelError)
    return facts


def facts_of(model: Any) -> ModelFacts:
    """The facts of a loaded keras.Model (hashes all of its weights)."""
    from harness.modelio import model_input_shape, model_num_classes, model_sha256
    from harness.quantize.cache import model_fingerprint

    return ModelFacts(fingerprint=model_fingerprint(model), sha256=model_sha256(model),
                      input_shape=model_input_shape(model), num_classes=model_num_classes(model))


def facts_key(file: Path) -> str:
    """sha256 of the file's (or folder's) bytes and the versions of the packages that read them."""
    payload = {"format": FACTS_FORMAT, "file_sha256": path_sha256(file), "versions": reader_versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def reader_versions() -> dict[str, str]:
    """Versions of TensorFlow and Keras, read from package metadata (importing them takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in READER_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def path_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative paths and bytes, sorted)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model {path} not found")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for file in files:
        if file != path:
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                h.update(chunk)
    return h.hexdigest()


def _read(entry: Path) -> ModelFacts | None:
    if not entry.is_file():
        return None
    try:
        raw = json.loads(entry.read_text())
        if raw.get("format") != FACTS_FORMAT:
            return None
        shape = tuple(None if d is None else int(d) for d in raw["input_shape"])
        return ModelFacts(str(raw["fingerprint"]), str(raw["sha256"]), shape, int(raw["num_classes"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("model facts %s are unreadable (%s); loading the model", entry, exc)
        return None
