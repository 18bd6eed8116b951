"""harness/datasets/assemble.py: ids made and checked without a Python string per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.datasets import assemble as assemble_module
from harness.datasets.assemble import duplicates


def test_duplicates_match_a_sort_of_the_strings(monkeypatch):
    rng = np.random.default_rng(0)
    ids = np.array([f"p{int(v)}" + "x" * int(w) for v, w in zip(rng.integers(0, 400, 500), rng.integers(0, 3, 500))])
    names, counts = np.unique(ids, return_counts=True)
    monkeypatch.setattr(assemble_module, "ID_HASH_ROWS", 64)  # several chunks
    np.testing.assert_array_equal(duplicates(ids), names[counts > 1])
    assert duplicates(np.array(["a", "b", "ab"])).size == 0


def test_ids_whose_hashes_collide_are_compared_as_strings(monkeypatch):
    monkeypatch.setattr(assemble_module, "_FNV_PRIME", np.uint64(0))  # every id hashes alike
    np.testing.assert_array_equal(duplicates(np.array(["a", "b", "a", "c", "b"])), ["a", "b"])
    assert duplicates(np.array(["a", "b", "c"])).size == 0


def test_generated_ids_are_the_stem_and_a_zero_padded_row_number():
    made = assemble_module._ids(Path("/data/faces.npz"), None, 100_001)
    assert made[:2].tolist() == ["faces-00000", "faces-00001"] and made[-1] == "faces-100000"
    assert made.dtype == np.dtype("<U12")  # exactly as wide as the longest id
