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
TFLITE_SUFFIX = ".tflite"                     # a converted model: run as it is, no conversions
OUTPUT_LOGITS = "logits"                      # the model's outputs, as qskew scores them ...
OUTPUT_PROBABILITIES = "probabilities"        # ... or already softmax/sigmoid: loss takes their log
PROBABILITY_LAYERS = frozenset({"Softmax"})   # a last layer of these classes outputs probabilities
PROBABILITY_ACTIVATIONS = frozenset({"softmax", "sigmoid"})  # so does a last layer with these
RESCALING_LAYERS = frozenset({"Rescaling", "Normalization"})  # layers that rescale the input in the model
PROBABILITY_SUM_TOLERANCE = 1e-3              # float32 softmax rows sum to 1 within ~1e-6; int8 ones less


def load_model(path: str | Path) -> Any:
    """A ``keras.Model`` from a ``.keras``/``.h5`` file or a SavedModel folder; ModelError otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model {path} not found")
    if path.is_dir():
        model = _load_saved_model(path)
    elif path.suffix.lower() in KERAS_SUFFIXES:
        model = _load_keras_file(path)
    elif path.suffix.lower() == TFLITE_SUFFIX:
        raise ModelError(f"model {path} is a .tflite file: this step needs the Keras model it was "
                         "converted from (a .keras file or a SavedModel folder)")
    else:
        raise ModelError(f"model {path}: unsupported file; give a .keras file, a SavedModel folder "
                         "or a .tflite file")
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
        raise ModelError(f"model {model.name!r} output has shape {shape}; qskew measures classifiers: it "
                         "expects one score per class: logits [batch, classes] (or probabilities)")
    return classes_of_output(shape[1], f"model {model.name!r}")


def classes_of_output(units: int, what: str) -> int:
    """K of a classifier's output with ``units`` units; ModelError for a single unit (regression,
    or a binary classifier's one logit), which qskew cannot score per class."""
    if int(units) < 2:
        raise ModelError(f"{what} has {units} output unit: a regression or single-logit binary model. qskew "
                         "measures classifiers: it expects one score per class, logits (or probabilities) "
                         "[batch, classes] with classes >= 2; give a binary model two outputs")
    return int(units)


def model_output_kind(model: Any) -> str:
    """``OUTPUT_PROBABILITIES`` when the model ends in a softmax or sigmoid (a Softmax layer or a
    layer with that activation), else ``OUTPUT_LOGITS``. A SavedModel hides its last layer: its
    outputs are judged by their values (:func:`values_look_like_probabilities`)."""
    layers = [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]
    if not layers:
        return OUTPUT_LOGITS
    last = layers[-1]
    if type(last).__name__ in PROBABILITY_LAYERS:
        return OUTPUT_PROBABILITIES
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    return OUTPUT_PROBABILITIES if activation in PROBABILITY_ACTIVATIONS else OUTPUT_LOGITS


def input_rescaling(model: Any) -> str:
    """The model's own input scaling, e.g. ``"Rescaling 'rescale' (x * 0.00392157 + 0)"``: the first
    ``RESCALING_LAYERS`` layer met before any layer with weights; "" when there is none."""
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind == "Rescaling":
            return f"{kind} {layer.name!r} (x * {_num(layer.scale)} + {_num(layer.offset)})"
        if kind == "Normalization":
            return f"{kind} {layer.name!r} ((x - mean) / std, mean {_num(layer.mean)})"
        if kind in RESCALING_LAYERS or layer.weights:
            return ""
    return ""


def _num(value: Any) -> str:
    import numpy as np

    flat = np.asarray(value, dtype=np.float64).ravel()
    return f"{flat[0]:.6g}" if flat.size == 1 else "[" + ", ".join(f"{v:.4g}" for v in flat[:4]) + \
        (", ...]" if flat.size > 4 else "]")


def values_look_like_probabilities(values: Any) -> bool:
    """True when every row is in [0, 1] and sums to 1 (within ``PROBABILITY_SUM_TOLERANCE``)."""
    import numpy as np

    from harness.records import row_chunks

    if np.ndim(values) != 2 or not np.size(values):
        return False
    for _, chunk in row_chunks(values):  # a large (memory-mapped) reference: a chunk at a time
        v = np.asarray(chunk, dtype=np.float64)
        if not (np.isfinite(v).all() and v.min() >= 0.0 and v.max() <= 1.0 and
                np.abs(v.sum(axis=1) - 1.0).max() <= PROBABILITY_SUM_TOLERANCE):
            return False
    return True


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
