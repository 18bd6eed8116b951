"""Load a user's model (a Keras ``.keras`` file or a TensorFlow SavedModel folder) and describe it.

The rest of the pipeline sees one kind of object, a single-input, single-output ``keras.Model``
that returns logits [batch, classes]. A SavedModel is wrapped: ``keras.layers.TFSMLayer`` calls its
``serving_default`` signature, behind a ``keras.Input`` shaped like that signature's one input.
``.keras`` files load with Keras's safe mode on (no arbitrary Lambda code).

>>> model = load_model("my_model.keras")  # doctest: +SKIP
>>> model_input_shape(model), model_num_classes(model)  # doctest: +SKIP
((8, 8, 1), 10)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.errors import ModelError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")   # what keras.saving.load_model reads
SAVED_MODEL_PB = "saved_model.pb"             # marks a SavedModel folder
SERVING_SIGNATURE = "serving_default"         # the signature every SavedModel exporter writes
UNSTABLE_CONFIG_KEYS = frozenset({"filepath"})  # config entries that name a location, not the model


def load_model(path: str | Path) -> Any:
    """A ``keras.Model`` from a ``.keras``/``.h5`` file or a SavedModel folder; ModelError otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model {path} not found")
    if path.is_dir():
        model = _load_saved_model(path)
    elif path.suffix.lower() in KERAS_SUFFIXES:
        model = _load_keras_file(path)
    else:
        raise ModelError(f"model {path}: unsupported file; give a .keras file or a SavedModel folder")
    model_input_shape(model)
    model_num_classes(model)
    return model


def _load_keras_file(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # zip, h5py, deserialization errors: all mean "cannot use this file"
        raise ModelError(f"model {path} cannot be loaded by Keras: {exc}") from exc


def _load_saved_model(path: Path) -> Any:
    import keras

    if not (path / SAVED_MODEL_PB).is_file():
        raise ModelError(f"model {path} is a folder but not a SavedModel (no {SAVED_MODEL_PB})")
    try:
        layer = keras.layers.TFSMLayer(str(path), call_endpoint=SERVING_SIGNATURE, name="saved_model")
    except Exception as exc:
        raise ModelError(f"SavedModel {path} cannot be loaded: {exc}") from exc
    args, kwargs = layer.call_endpoint_fn.structured_input_signature
    specs = list(args) + list(kwargs.items())
    if len(specs) != 1:
        raise ModelError(f"SavedModel {path}: signature {SERVING_SIGNATURE!r} takes {len(specs)} inputs; "
                         "qskew needs exactly one")
    name, spec = specs[0] if isinstance(specs[0], tuple) else (specs[0].name or "input", specs[0])
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=name)
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelError(f"SavedModel {path}: signature {SERVING_SIGNATURE!r} has outputs "
                             f"{', '.join(sorted(outputs))}; qskew needs exactly one (the logits)")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=path.name)


def model_input_shape(model: Any) -> tuple:
    """The shape of one sample the model takes (no batch dimension); ``None`` marks any size."""
    inputs = model.inputs
    if len(inputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(inputs)} inputs; qskew needs exactly one")
    return tuple(None if d is None else int(d) for d in inputs[0].shape[1:])


def model_num_classes(model: Any) -> int:
    """K for a model whose single output is logits [batch, K]."""
    outputs = model.outputs
    if len(outputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(outputs)} outputs; qskew needs exactly one (the logits)")
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or shape[1] is None:
        raise ModelError(f"model {model.name!r} output has shape {shape}; qskew needs logits [batch, classes]")
    return int(shape[1])


def model_sha256(model: Any) -> str:
    """Hash of the architecture (Keras config, minus file locations) and every weight's bytes.

    Stable for the same model across calls, processes and a save/load round trip.
    """
    h = hashlib.sha256()
    h.update(_architecture(model).encode())
    for weights in model.get_weights():
        h.update(f"{weights.dtype}{weights.shape}".encode())
        h.update(weights.tobytes())
    return h.hexdigest()


def _architecture(model: Any) -> str:
    try:
        config = json.loads(model.to_json())
    except Exception:  # a subclassed model without get_config: fall back to its class and weights' shapes
        return type(model).__name__
    return json.dumps(_drop_keys(config, UNSTABLE_CONFIG_KEYS), sort_keys=True)


def _drop_keys(value: Any, keys: frozenset) -> Any:
    if isinstance(value, dict):
        return {k: _drop_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop_keys(v, keys) for v in value]
    return value
