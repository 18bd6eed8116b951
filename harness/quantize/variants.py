"""The one registry of quantization variants qskew knows how to build.

Each variant is a name (used in experiment files, CLI options, run directories) and a
:class:`VariantSpec` saying what it promises: whether it needs a representative dataset and which
dtypes its inputs/outputs have. ``convert.py`` dispatches on these names; nothing else keeps a list.

    >>> parse_variants("int8, mixed")
    ['int8', 'mixed']
    >>> get_variant("int4")
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: unknown variant 'int4'; known: fp32, dynamic, float16, int8, int16x8, mixed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from harness.errors import ConfigError

ALL_ALIAS = "all"  # parse_variants("all") means every registered variant, in registry order


@dataclass(frozen=True)
class VariantSpec:
    """What a variant is and what its converted model promises.

    ``io_dtype`` is the dtype of the model's input and output tensors as converted by default
    (int16x8 keeps float I/O, the converter's default; QuantizeOptions.int16x8_io can change it).
    """

    name: str
    description: str
    needs_calibration: bool
    io_dtype: str
    weight_dtype: str
    activation_dtype: str


VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in (
    VariantSpec("fp32", "float32 TFLite model, no quantization",
                needs_calibration=False, io_dtype="float32", weight_dtype="float32",
                activation_dtype="float32"),
    VariantSpec("dynamic", "dynamic-range: int8 weights, float activations quantized on the fly",
                needs_calibration=False, io_dtype="float32", weight_dtype="int8",
                activation_dtype="float32"),
    VariantSpec("float16", "float16 weights, dequantized to float32 at load time",
                needs_calibration=False, io_dtype="float32", weight_dtype="float16",
                activation_dtype="float32"),
    VariantSpec("int8", "full-integer: int8 weights and activations, int8 input and output",
                needs_calibration=True, io_dtype="int8", weight_dtype="int8",
                activation_dtype="int8"),
    VariantSpec("int16x8", "16-bit activations, 8-bit weights; float input and output",
                needs_calibration=True, io_dtype="float32", weight_dtype="int8",
                activation_dtype="int16"),
    VariantSpec("mixed", "int8 everywhere except chosen layers at 16-bit activations "
                "(ai-edge-quantizer)", needs_calibration=True, io_dtype="int8",
                weight_dtype="int8", activation_dtype="int8+int16"),
)}


def known_variants() -> list[str]:
    """Registered variant names, in registry order."""
    return list(VARIANTS)


def get_variant(name: str) -> VariantSpec:
    """The spec of ``name``; ConfigError listing the known names when there is none."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


def parse_variants(spec: str | Iterable[str]) -> list[str]:
    """Variant names from ``"int8,mixed"`` (or a list of names), validated, duplicates dropped.

    ``"all"`` expands to every registered variant. Order is kept as written.
    """
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for raw in parts:
        name = str(raw).strip().lower()
        if not name:
            continue
        expanded = known_variants() if name == ALL_ALIAS else [get_variant(name).name]
        names.extend(n for n in expanded if n not in names)
    if not names:
        raise ConfigError(f"no variant given; known: {', '.join(VARIANTS)}")
    return names
