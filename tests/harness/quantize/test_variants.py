"""The variant registry: parsing and helpful lookups."""

import pytest

from harness.errors import ConfigError
from harness.quantize.variants import VARIANTS, get_variant, known_variants, parse_variants


def test_registry_holds_the_six_variants_in_order():
    assert known_variants() == ["fp32", "dynamic", "float16", "int8", "int16x8", "mixed"]
    assert [n for n, s in VARIANTS.items() if s.needs_calibration] == ["int8", "int16x8", "mixed"]


def test_parse_keeps_order_strips_and_drops_duplicates():
    assert parse_variants("int8,mixed") == ["int8", "mixed"]
    assert parse_variants(" mixed , INT8,mixed,") == ["mixed", "int8"]
    assert parse_variants(["fp32", "dynamic"]) == ["fp32", "dynamic"]


def test_all_expands_to_every_variant():
    assert parse_variants("all") == known_variants()
    assert parse_variants("int8,all") == ["int8", "fp32", "dynamic", "float16", "int16x8", "mixed"]


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        parse_variants("int8,int4")
    assert str(err.value) == ("unknown variant 'int4'; known: fp32, dynamic, float16, int8, "
                              "int16x8, mixed")
    with pytest.raises(ConfigError, match="unknown variant 'fp64'"):
        get_variant("fp64")


def test_empty_list_is_an_error():
    with pytest.raises(ConfigError, match="no variant given"):
        parse_variants(" , ")
