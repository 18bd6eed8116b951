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
FACTS_FORMAT = 2               # bump when the facts' fields change meaning; old entries are then ignored
HASH_CHUNK_BYTES = 1 << 20     # model files can be large: hash them in 1 MiB chunks
READER_PACKAGES = ("tensorflow", "keras")  # what turns the file's bytes into a model (part of the key)
FORM_KERAS = "keras"                   # a Keras model / SavedModel: converted into the variants
FORM_TFLITE_FLOAT = "tflite-float"     # a float .tflite: its own FP32 reference (reference kernels)
FORM_TFLITE_QUANTIZED = "tflite-quantized"  # a quantized .tflite: no FP32 reference at all
QUANTIZED_DTYPES = frozenset({"int8", "uint8", "int16", "float16"})  # tensors that mark a quantized .tflite
PROBABILITY_OPS = frozenset({"SOFTMAX", "LOGISTIC"})  # a .tflite ending in these outputs probabilities
REQUANTIZE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})  # ... also when its float I/O adds these after them


@dataclass(frozen=True)
class ModelFacts:
    """What the pipeline needs to know about a model without loading it."""

    fingerprint: str          # harness.quantize.cache.model_fingerprint: the variants' cache key
    sha256: str               # harness.modelio.model_sha256: recorded in the manifest, keys the reference
    input_shape: tuple        # one sample's shape, None for any size
    num_classes: int
    outputs: str = "logits"   # harness.modelio.OUTPUT_LOGITS or OUTPUT_PROBABILITIES (by the last layer/op)
    form: str = FORM_KERAS    # FORM_KERAS, FORM_TFLITE_FLOAT or FORM_TFLITE_QUANTIZED
    input_rescaling: str = ""  # the model's own Rescaling/Normalization layer (modelio.input_rescaling), "" if none

    @property
    def tflite(self) -> bool:
        return self.form != FORM_KERAS

    @property
    def has_fp32_reference(self) -> bool:
        """False for a quantized .tflite: its reference is its own run on the reference kernels."""
        return self.form != FORM_TFLITE_QUANTIZED

    def to_json(self) -> dict:
        return {"format": FACTS_FORMAT, "fingerprint": self.fingerprint, "sha256": self.sha256,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "outputs": self.outputs, "form": self.form, "input_rescaling": self.input_rescaling}


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

    @classmethod
    def from_tflite(cls, path: Path) -> "ModelSource":
        """A .tflite file as the model under test: no Keras model (conversions are skipped)."""
        return cls(None, {"source": "file", "path": str(path), "form": "tflite"}, file=Path(path))

    @property
    def tflite(self) -> Path | None:
        """The .tflite file when the model under test is one, else None."""
        from harness.modelio import TFLITE_SUFFIX

        return self.file if self.file is not None and self.file.suffix.lower() == TFLITE_SUFFIX else None

    @functools.cached_property
    def model(self) -> Any:
        if self.loaded is not None:
            return self.loaded
        if self.tflite is not None:
            raise ModelError(f"model {self.tflite} is a .tflite file: this step needs the Keras model "
                             "it was converted from (a .keras file or a SavedModel folder)")
        if self.load is None:
            raise ModelError(f"model source {dict(self.description)} has neither a model nor a loader")
        log.info("loading the FP32 model (%s)", self.description.get("path") or self.description.get("name"))
        return self.load()

    @functools.cached_property
    def facts(self) -> ModelFacts:
        """The model's facts: from the cache when ``file`` is known, else from the loaded model."""
        if self.file is None:
            return facts_of(self.model)
        if self.tflite is not None:
            return tflite_facts(self.tflite)
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
    from harness.modelio import (input_rescaling, model_input_shape, model_num_classes, model_output_kind,
                                 model_sha256)
    from harness.quantize.cache import model_fingerprint

    return ModelFacts(fingerprint=model_fingerprint(model), sha256=model_sha256(model),
                      input_shape=model_input_shape(model), num_classes=model_num_classes(model),
                      outputs=model_output_kind(model), input_rescaling=input_rescaling(model))


def tflite_facts(path: Path) -> ModelFacts:
    """The facts of a .tflite model under test, read with the host runtime (no TensorFlow import).

    Its fingerprint and sha256 are the file's sha256; a tensor of a quantized dtype makes it
    FORM_TFLITE_QUANTIZED; a last SOFTMAX/LOGISTIC op makes its outputs probabilities.
    """
    from harness.errors import ArtifactError
    from harness.modelio import OUTPUT_LOGITS, OUTPUT_PROBABILITIES, classes_of_output
    from harness.quantize.inspect import inspect_model, list_ops

    try:
        info, ops = inspect_model(path), list_ops(path)
    except ArtifactError as exc:
        raise ModelError(f"model {path}: {exc}") from exc
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ModelError(f"model {path} has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                         "qskew needs exactly one of each (the samples, the class scores)")
    tin, tout = info.inputs[0], info.outputs[0]
    out_shape = tout.shape_signature or tout.shape
    if len(out_shape) != 2:
        raise ModelError(f"model {path} output has shape {list(out_shape)}; qskew needs logits [batch, classes]")
    classes = classes_of_output(out_shape[1], f"model {path}")
    quantized = any(dtype in QUANTIZED_DTYPES for dtype, _ in info.tensor_dtypes)
    computing = [op.op_name for op in ops if op.op_name not in REQUANTIZE_OPS]
    last = computing[-1] if computing else ""
    shape = tuple(None if d == -1 else int(d) for d in (tin.shape_signature or tin.shape)[1:])
    return ModelFacts(fingerprint=info.sha256, sha256=info.sha256, input_shape=shape, num_classes=classes,
                      outputs=OUTPUT_PROBABILITIES if last in PROBABILITY_OPS else OUTPUT_LOGITS,
                      form=FORM_TFLITE_QUANTIZED if quantized else FORM_TFLITE_FLOAT)


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
        return ModelFacts(str(raw["fingerprint"]), str(raw["sha256"]), shape, int(raw["num_classes"]),
                          outputs=str(raw["outputs"]), form=str(raw["form"]),
                          input_rescaling=str(raw["input_rescaling"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("model facts %s are unreadable (%s); loading the model", entry, exc)
        return None
