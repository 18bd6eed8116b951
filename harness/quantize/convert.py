"""Build the quantized variants of one model, cached by content, each checked on the host runtime.

    >>> calib = make_calibration(dataset, size=256, strategy="proportional")
    >>> artifacts = convert_all(keras_model, parse_variants("fp32,int8,int16x8,mixed"), calib,
    ...                         QuantizeOptions(), paths.cache_dir("variants"))
    >>> [(a.variant, a.ok, a.error) for a in artifacts]

``model`` is a Keras 3 model or a ``pathlib.Path`` to a SavedModel folder. With
``options.fixed_batch = N`` every variant (``mixed`` too, built from the fixed-batch fp32 model)
has its batch dimension fixed at N; N is in each recipe, hence in the cache key. A variant that
fails to convert, or whose .tflite fails to prepare on ai_edge_litert (at batch N when fixed, else
resized to ``options.check_batch_size``), comes back as a ModelArtifact with ``error`` set; the
other variants go on. A configuration mistake (unknown variant, a calibrated variant without
calibration, a model that cannot be fingerprinted) raises before anything runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness import paths
from harness.errors import ArtifactError, ConfigError, QskewError
from harness.quantize import cache
from harness.quantize.calibration import Calibration
from harness.quantize.inspect import OpInfo, check_prepares, read_io
from harness.quantize.mixed import int16_ops, mixed_request, quantize_mixed
from harness.quantize.options import QuantizeOptions
from harness.quantize.tflite_converter import converter_request, run_converter
from harness.quantize.variants import get_variant, parse_variants
from harness.records import ModelArtifact

log = logging.getLogger(__name__)

CACHE_SUBDIR = "variants"  # under harness.paths.cache_dir() when no cache_dir is given


@dataclass(frozen=True)
class KnownModel:
    """A model known by its fingerprint (:func:`cache.model_fingerprint`), loaded only when a
    variant is not in the cache: a fully cached run never imports TensorFlow."""

    fingerprint: str
    load: Callable[[], Any]


def convert(model: Any, variant: str, calibration: Calibration | None,
            options: QuantizeOptions = QuantizeOptions(),
            cache_dir: Path | None = None) -> ModelArtifact:
    """One variant of ``model`` (keras.Model or SavedModel folder), from the cache if there."""
    source = _source(model)
    _require_calibration([variant], calibration)
    return _convert_one(source, _fingerprint(source), variant, calibration, options, _cache_root(cache_dir))


def convert_all(model: Any, variants: Sequence[str] | str, calibration: Calibration | None,
                options: QuantizeOptions = QuantizeOptions(), cache_dir: Path | None = None,
                progress: bool = True) -> list[ModelArtifact]:
    """Every variant in ``variants``, in order; one variant's failure never stops the others."""
    from tqdm import tqdm

    names = parse_variants(variants)
    source = _source(model)
    _require_calibration(names, calibration)
    fingerprint = _fingerprint(source)
    root = _cache_root(cache_dir)
    artifacts = []
    bar = tqdm(names, desc="convert", unit="variant", disable=not progress or not _is_tty())
    for name in bar:
        bar.set_postfix_str(name)
        artifacts.append(_convert_one(source, fingerprint, name, calibration, options, root))
    return artifacts


def variant_request(variant: str, options: QuantizeOptions) -> dict[str, Any]:
    """What ``variant`` asks of its converter (recorded in the recipe, part of the cache key)."""
    if variant == "mixed":
        return mixed_request(options)
    return converter_request(variant, options)


def _convert_one(source: Any, fingerprint: str, variant: str, calibration: Calibration | None,
                 options: QuantizeOptions, root: Path) -> ModelArtifact:
    calib = calibration if get_variant(variant).needs_calibration else None
    request = variant_request(variant, options)
    key = cache.cache_key(fingerprint, variant, request, calib.info.sha256 if calib else None,
                          cache.tool_versions())
    meta = cache.load(root, key, variant)
    if meta is None:
        try:
            meta = _build(source, fingerprint, variant, key, calib, options, root)
        except QskewError as exc:
            log.warning("%s", exc)
            return ModelArtifact(variant=variant, path=None, sha256=None, size_bytes=0,
                                 inputs=(), outputs=(), recipe=request,
                                 calibration=calib.info if calib else None, error=str(exc),
                                 error_detail=getattr(exc, "detail", None))
    else:
        log.info("variant %s: cached %s", variant, cache.entry_paths(root, key, variant)[0])
    return _checked(cache.entry_paths(root, key, variant)[0], variant, meta, calib, options)


def _build(source: Any, fingerprint: str, variant: str, key: str, calib: Calibration | None,
           options: QuantizeOptions, root: Path) -> dict:
    """Convert, store the .tflite and its sidecar; returns the sidecar's content."""
    started = time.perf_counter()
    recipe = variant_request(variant, options)
    source = source.load() if isinstance(source, KnownModel) else source
    if variant == "mixed":
        float_path = _float_tflite(source, fingerprint, options, root)
        ranges_from = (_float_tflite(source, fingerprint, dataclasses.replace(options, fixed_batch=0), root)
                       if options.fixed_batch else None)
        data, chosen = quantize_mixed(float_path, calib, options, calibrate_on=ranges_from)
    else:
        data = run_converter(source, variant, calib, options)
    path = cache.store(root, key, variant, data)
    if variant == "mixed":
        recipe["float_model_sha256"] = cache.file_sha256(float_path)
        if ranges_from is not None:
            recipe["ranges_from_float_model_sha256"] = cache.file_sha256(ranges_from)
        recipe["layers_16bit"] = [{"op": op.op_name, "scope": op.scope,
                                   "float_model_index": op.index} for op in chosen]
        recipe["int16_activation_ops"] = [_op_json(op) for op in int16_ops(path)]
    meta = {"sha256": cache.file_sha256(path), "size_bytes": path.stat().st_size,
            "recipe": recipe, "calibration": calib.info.to_json() if calib else None,
            "versions": cache.tool_versions(), "convert_s": round(time.perf_counter() - started, 3),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    cache.store_sidecar(root, key, variant, meta)
    log.info("variant %s: converted in %.1f s -> %s", variant, meta["convert_s"], path)
    return meta


def _float_tflite(source: Any, fingerprint: str, options: QuantizeOptions, root: Path) -> Path:
    """The fp32 .tflite of ``source`` (the same cache entry as the fp32 variant)."""
    request = variant_request("fp32", options)
    key = cache.cache_key(fingerprint, "fp32", request, None, cache.tool_versions())
    if cache.load(root, key, "fp32") is None:
        _build(source, fingerprint, "fp32", key, None, options, root)
    return cache.entry_paths(root, key, "fp32")[0]


def _checked(path: Path, variant: str, meta: dict, calib: Calibration | None,
             options: QuantizeOptions) -> ModelArtifact:
    """The artifact of a stored .tflite, with ``error`` set if it does not prepare on the host."""
    return artifact_of(path, variant, meta["recipe"], calib, options.prepare_batch_size,
                       sha256=meta["sha256"], size_bytes=int(meta["size_bytes"]))


def artifact_of(path: Path, variant: str, recipe: dict, calib: Calibration | None, check_batch_size: int,
                sha256: str | None = None, size_bytes: int | None = None) -> ModelArtifact:
    """A .tflite (converted here or built elsewhere, e.g. by qskew mitigate) as a ModelArtifact:
    sha256, I/O quantization, and ``error`` set if it does not prepare on the host."""
    inputs, outputs, error = (), (), None
    try:
        inputs, outputs = read_io(path)
        check_prepares(path, check_batch_size)
    except ArtifactError as exc:
        error = f"variant {variant!r} failed to prepare: {exc}"
        log.warning("%s", error)
    return ModelArtifact(variant=variant, path=Path(path),
                         sha256=sha256 or cache.file_sha256(path),
                         size_bytes=Path(path).stat().st_size if size_bytes is None else size_bytes,
                         inputs=inputs, outputs=outputs, recipe=recipe,
                         calibration=calib.info if calib else None, error=error)


def _require_calibration(variants: Sequence[str], calibration: Calibration | None) -> None:
    for name in variants:
        if get_variant(name).needs_calibration and calibration is None:
            raise ConfigError(f"variant {name!r} needs a calibration set (representative "
                              "dataset): pass make_calibration(train, ...)")


def _source(model: Any) -> Any:
    """A SavedModel folder as a Path; a KnownModel as it is; anything else is taken as a Keras model."""
    return Path(model) if isinstance(model, (str, os.PathLike)) else model


def _fingerprint(source: Any) -> str:
    return source.fingerprint if isinstance(source, KnownModel) else cache.model_fingerprint(source)


def _cache_root(cache_dir: Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else paths.cache_dir(CACHE_SUBDIR)


def _op_json(op: OpInfo) -> dict:
    return {"index": op.index, "op": op.op_name, "scope": op.scope,
            "output_dtypes": list(op.output_dtypes)}


def _is_tty() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())
