"""Quantization-aware training in a process of its own: ``python -m harness.mitigate.qat JOB.json``.

tensorflow-model-optimization 0.8.1 supports only Keras 2 (``tf_keras``), and TensorFlow picks
Keras 2 only when ``TF_USE_LEGACY_KERAS=1`` is set before it is first imported, for the whole
process. So the host starts this module as a child process (``harness.mitigate.mitigate``) and the
rest of qskew stays on Keras 3. The job folder's files are described in ``harness.mitigate.job``.

Steps:

1. Rebuild the architecture with tf_keras: a built-in model from its definition (``job.builder``,
   the "module:function" the command layer resolved, run with ``keras`` bound to ``tf_keras``); a
   user model from its Keras 3 config translated by ``legacy_config`` (ModelError if tf_keras
   cannot rebuild it).
2. Copy the FP32 weights layer by layer (by layer name; shapes checked).
3. Annotate every layer for 8-bit QAT except ``kept_layers`` (and layers tfmot cannot quantize),
   then ``quantize_apply``. "Higher precision" for a kept layer means: it trains in float, with no
   fake quantization of its weights or output. tfmot's 8-bit scheme has no 16-bit activations, so
   the int8 export still quantizes a kept layer post-training (with the calibration set's ranges),
   while the host's mixed export of the fine-tuned weights gives it 16-bit activations.
4. Fine-tune with Adam for ``epochs`` epochs, each epoch a group-balanced draw of the training rows
   (``balanced_sampling``) or a shuffle of them, with group-weighted loss (``sample_weight``) if
   asked (``harness.mitigate.sampling``).
5. Export: ``int8.tflite`` (full integer, int8 in/out, the plain int8's representative dataset,
   through ``harness.quantize.tflite_converter``), ``weights_qat.npz`` (the fine-tuned float
   weights under the FP32 layer names) and ``result.json`` (written last: it marks success).

Exit codes: 0 done; 2 a QskewError (one line ``qat: error: ...`` on stderr); anything else is a
crash whose traceback is on stderr. The host quotes the last lines of the output in its error.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.errors import ConversionError, ModelError, QskewError
from harness.mitigate import job as jobfiles
from harness.mitigate.job import QatJob, QatResult
from harness.mitigate.sampling import balanced_indices, group_shares, group_weights, sample_weights

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"  # must be "1" before TensorFlow is imported (see above)
EXIT_OK = 0
EXIT_ERROR = 2  # a QskewError, reported on one line
# tfmot's message for a layer it cannot quantize: "Layer resize:<class '...Resizing'> is not supported"
UNSUPPORTED_LAYER = re.compile(r"Layer (\S+?):<class")
VARIANT = "int8-qat"  # how conversion errors name what failed
MAX_LINE_CHARS = 300  # Keras error messages start with a whole layer config; keep its head


def main(argv: list[str] | None = None) -> int:
    """Run the job named on the command line; the exit code says how it went (module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m harness.mitigate.qat JOB_DIR/job.json", file=sys.stderr)
        return EXIT_ERROR
    if "tensorflow" in sys.modules and os.environ.get(LEGACY_KERAS_ENV) != "1":
        print(f"qat: error: TensorFlow was imported before {LEGACY_KERAS_ENV}=1 was set; "
              "run QAT in a process of its own", file=sys.stderr)
        return EXIT_ERROR
    os.environ[LEGACY_KERAS_ENV] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    try:
        result = run(Path(args[0]))
    except QskewError as err:
        print(f"qat: error: {err}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(f"qat: done in {time.perf_counter() - started:.1f} s ({len(result.annotated_layers)} layers "
          f"quantization-aware, {len(result.kept_layers)} kept float)", flush=True)
    return EXIT_OK


def run(job_path: Path) -> QatResult:
    """Do the job in ``job_path`` (a job.json in its job folder) and write its outputs there."""
    folder = Path(job_path).parent
    job = QatJob.from_json(jobfiles.read_json(job_path))
    tf, tf_keras, tfmot = _import_toolkit()
    tf_keras.utils.set_random_seed(job.seed)
    tf.config.experimental.enable_op_determinism()
    model = _rebuild(job, folder, tf_keras)
    with np.load(folder / jobfiles.WEIGHTS_FILE, allow_pickle=False) as weights:
        _copy_weights(model, {k: weights[k] for k in weights.files}, job.model_label)
    qat_model, annotated, unsupported = _quantize(model, job, tf_keras, tfmot)
    x, y, groups = _training_data(folder, job)
    started = time.perf_counter()
    history, shares, weights_by_group = _fine_tune(qat_model, x, y, groups, job, tf_keras)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    (folder / jobfiles.INT8_FILE).write_bytes(_export_int8(qat_model, folder))
    np.savez(folder / jobfiles.QAT_WEIGHTS_FILE, **_float_weights(qat_model, model, job.model_label))
    result = QatResult(annotated_layers=tuple(annotated), kept_layers=tuple(job.kept_layers),
                       unsupported_layers=tuple(unsupported), history=history,
                       epoch_group_shares=tuple(shares), group_weights=weights_by_group,
                       train_s=round(train_s, 3), export_s=round(time.perf_counter() - started, 3),
                       versions=_versions(tf, tf_keras, tfmot))
    jobfiles.write_json(folder / jobfiles.RESULT_FILE, result.to_json())
    return result


def _import_toolkit():
    """TensorFlow, tf_keras and tfmot; QskewError naming the ``mitigate`` extra when one is missing."""
    import tensorflow as tf

    from harness.mitigate import toolkit

    tf_keras, tfmot = toolkit.load()
    return tf, tf_keras, tfmot


def _rebuild(job: QatJob, folder: Path, tf_keras) -> Any:
    """The FP32 architecture as a tf_keras model (weights not yet copied)."""
    if job.builder is not None:
        module, _, name = job.builder.partition(":")
        try:
            build = getattr(importlib.import_module(module), name)
            with _keras_bound_to(tf_keras):
                return build(tuple(job.input_shape), job.num_classes, job.seed)
        except Exception as exc:  # a definition that uses Keras 3-only API
            raise ModelError(f"model {job.model_label!r}: the definition of built-in model "
                             f"({job.builder}) does not build with tf_keras: {_first_line(exc)}") from exc
    from harness.mitigate.legacy_config import to_tf_keras_config

    config = to_tf_keras_config(jobfiles.read_json(folder / jobfiles.CONFIG_FILE))
    try:
        return tf_keras.models.model_from_json(json.dumps(config))
    except Exception as exc:  # unknown layer class, Keras 3-only argument, custom object...
        raise ModelError(f"QAT needs a built-in model or one that tf_keras (Keras 2) can rebuild from "
                         f"its config; model {job.model_label!r} cannot be rebuilt: {_first_line(exc)}") from exc


@contextlib.contextmanager
def _keras_bound_to(module) -> Iterator[None]:
    """``import keras`` yields ``module`` for a while (model definitions import keras lazily)."""
    saved = sys.modules.get("keras")
    sys.modules["keras"] = module
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("keras", None)
        else:
            sys.modules["keras"] = saved


def _copy_weights(model, weights: dict[str, np.ndarray], label: str) -> None:
    """Set every layer's weights from ``weights`` ("<layer>/<i>" keys); all keys must be used."""
    used = set()
    for layer in model.layers:
        count = len(layer.weights)
        if not count:
            continue
        keys = [f"{layer.name}/{i}" for i in range(count)]
        missing = [k for k in keys if k not in weights]
        if missing:
            raise ModelError(f"model {label!r}: no FP32 weights for layer {layer.name!r} "
                             f"(missing {', '.join(missing)}); the rebuilt architecture differs")
        values = [weights[k] for k in keys]
        for var, value in zip(layer.weights, values):
            if tuple(var.shape) != tuple(value.shape):
                raise ModelError(f"model {label!r}: layer {layer.name!r} weight {var.name} has shape "
                                 f"{tuple(var.shape)} in tf_keras but {tuple(value.shape)} in the FP32 model")
        layer.set_weights(values)
        used.update(keys)
    unused = sorted(set(weights) - used)
    if unused:
        raise ModelError(f"model {label!r}: FP32 weights {', '.join(unused[:5])} match no layer of "
                         f"the rebuilt architecture")


def _quantize(model, job: QatJob, tf_keras, tfmot) -> tuple[Any, list[str], list[str]]:
    """The QAT model; layers named in ``job.kept_layers`` (and layers tfmot refuses) stay float."""
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(job.kept_layers) - names)
    if unknown:
        raise ModelError(f"model {job.model_label!r} has no layer(s) {', '.join(unknown)} to keep float")
    float_layers = set(job.kept_layers)
    unsupported: list[str] = []
    while True:
        def annotate(layer):
            if layer.name in float_layers or isinstance(layer, tf_keras.layers.InputLayer):
                return layer
            return tfmot.quantization.keras.quantize_annotate_layer(layer)

        try:
            annotated = tf_keras.models.clone_model(model, clone_function=annotate)
            qat_model = tfmot.quantization.keras.quantize_apply(annotated)
        except (RuntimeError, ValueError, TypeError) as exc:
            refused = UNSUPPORTED_LAYER.search(str(exc))
            if refused is None or refused.group(1) in float_layers:
                raise ModelError(f"tfmot cannot make model {job.model_label!r} quantization-aware: "
                                 f"{_first_line(exc)}") from exc
            float_layers.add(refused.group(1))
            unsupported.append(refused.group(1))
            continue
        annotated_names = [layer.name for layer in model.layers
                           if layer.name not in float_layers
                           and not isinstance(layer, tf_keras.layers.InputLayer)]
        return qat_model, annotated_names, unsupported


def _training_data(folder: Path, job: QatJob) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.load(folder / jobfiles.TRAIN_X_FILE, allow_pickle=False)
    y = np.load(folder / jobfiles.TRAIN_Y_FILE, allow_pickle=False)
    groups = np.load(folder / jobfiles.TRAIN_GROUP_FILE, allow_pickle=False).astype(str)
    x = x.astype(np.float32) * np.float32(job.preprocess_scale) + np.float32(job.preprocess_offset)
    return x, y.astype(np.int64), groups


def _fine_tune(qat_model, x, y, groups, job: QatJob, tf_keras):
    """Fine-tune ``job.epochs`` epochs; returns (history, per-epoch group shares, group weights)."""
    qat_model.compile(optimizer=tf_keras.optimizers.Adam(job.learning_rate),
                      loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    rng = np.random.default_rng(job.seed)
    weights = group_weights(groups) if job.group_weighted_loss else None
    row_weights = sample_weights(groups, weights) if weights else np.ones(len(y), np.float32)
    history: dict[str, list[float]] = {}
    shares = []
    for epoch in range(job.epochs):
        index = (balanced_indices(groups, len(y), rng) if job.balanced_sampling
                 else rng.permutation(len(y)))
        shares.append(group_shares(groups[index]))
        try:
            fit = qat_model.fit(x[index], y[index], sample_weight=row_weights[index],
                                batch_size=job.batch_size, epochs=1, shuffle=False, verbose=0)
        except Exception as exc:  # TensorFlow raises many types; translate once, here
            raise ModelError(f"QAT fine-tuning of model {job.model_label!r} failed in epoch "
                             f"{epoch + 1}: {_first_line(exc)}") from exc
        for key, values in fit.history.items():
            history.setdefault(key, []).append(float(values[-1]))
        print(f"qat: epoch {epoch + 1}/{job.epochs} loss {history['loss'][-1]:.4f} "
              f"accuracy {history.get('accuracy', [float('nan')])[-1]:.4f}", flush=True)
    return history, shares, weights


def _export_int8(qat_model, folder: Path) -> bytes:
    """Full-integer .tflite of the QAT model, with the plain int8's representative dataset."""
    from harness.quantize.calibration import Calibration
    from harness.quantize.options import QuantizeOptions
    from harness.quantize.tflite_converter import run_converter
    from harness.records import CalibrationInfo

    x = np.load(folder / jobfiles.CALIBRATION_FILE, allow_pickle=False).astype(np.float32)
    calibration = Calibration(x_float=x, ids=np.array([], dtype="<U1"),
                              info=CalibrationInfo(size=len(x), strategy="given", seed=0,
                                                   group_shares={}, sha256=""))
    try:
        return run_converter(qat_model, "int8", calibration, QuantizeOptions())
    except ConversionError as exc:
        raise ConversionError(VARIANT, exc.message) from exc


def _float_weights(qat_model, model, label: str) -> dict[str, np.ndarray]:
    """The fine-tuned float weights under the FP32 model's keys, found by variable name."""
    by_name: dict[str, list] = {}
    for var in qat_model.weights:
        by_name.setdefault(var.name, []).append(var)
    out = {}
    for layer in model.layers:
        for i, var in enumerate(layer.weights):
            found = by_name.get(var.name, [])
            if len(found) != 1:
                raise ModelError(f"model {label!r}: {len(found)} weights named {var.name} in the QAT "
                                 f"model (expected one); cannot export its float weights")
            out[f"{layer.name}/{i}"] = np.asarray(found[0].numpy())
    return out


def _versions(tf, tf_keras, tfmot) -> dict[str, str]:
    return {"tensorflow": tf.__version__, "tf_keras": getattr(tf_keras, "__version__", ""),
            "tensorflow_model_optimization": getattr(tfmot, "__version__", "")}


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, and its last line when that differs (Keras puts
    the config first and the cause last)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0] if len(lines[0]) <= MAX_LINE_CHARS else lines[0][:MAX_LINE_CHARS] + " ..."
    return head if len(lines) == 1 else f"{head} {lines[-1]}"


if __name__ == "__main__":
    sys.exit(main())
