"""Paired cells (``harness.metrics.cells``): counts back from stored rates, refused when they are none,
and per-sample cells as the statistics count them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.metrics.attributes import Attributes
from harness.metrics.cells import CELLS, cells_from_rates, cells_of_frame


def rates(cells, n):
    both_right, r2w, w2r, _, other = cells
    return n, (both_right + r2w) / n, (both_right + w2r) / n, (r2w + w2r + other) / n, r2w / n, w2r / n


@pytest.mark.parametrize("n", [1, 7, 719, 10_007, 3_000_017])
def test_counts_come_back_exactly_from_rates_of_any_size(n):
    rng = np.random.default_rng(n)
    for _ in range(200):
        cells = rng.multinomial(n, rng.dirichlet(np.ones(len(CELLS))))
        np.testing.assert_array_equal(cells_from_rates(*rates(cells, n)), cells)


def test_the_docstring_example():
    np.testing.assert_array_equal(cells_from_rates(4, 0.75, 0.5, 0.5, 0.25, 0.0), [2, 1, 0, 0, 1])


@pytest.mark.parametrize("args, message", [
    ((100, 0.905, 0.9, 0.1, 0.05, 0.0), "acc_ref=0.905 is not a count out of n=100"),
    ((100, 0.9, 0.9, 0.05, 0.05, 0.05), "not the counts of n paired samples"),   # flips < r2w + w2r
    ((100, 0.9, 0.8, 0.1, 0.05, 0.0), "not the counts of n paired samples"),     # acc disagrees
    ((100, float("nan"), 0.9, 0.1, 0.05, 0.0), "acc_ref=nan is not a count"),
    ((0, 0.0, 0.0, 0.0, 0.0, 0.0), "n=0 is no group's size"),   # else NaN drops, and NaN > limit is False
    ((-4, 0.5, 0.5, 0.0, 0.0, 0.0), "n=-4 is no group's size"),
])
def test_rates_that_are_no_counts_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        cells_from_rates(*args)


def test_cells_of_a_frame_per_job_and_attribute():
    frame = pd.DataFrame({
        "variant": ["int8"] * 5, "target": ["local"] * 5, "delegate": ["xnnpack"] * 5,
        "group": ["F\u00d7A", "F\u00d7B", "M\u00d7A", "M\u00d7A", "F\u00d7A"],
        "correct_ref": [True, True, False, False, False], "correct": [True, False, True, False, False],
        "pred_ref": [1, 1, 0, 2, 2], "pred": [1, 0, 1, 2, 3],
    })
    cells = cells_of_frame(frame, Attributes(("sex", "race"), intersections=True))
    assert [(c.attribute, c.names) for c in cells] == [("sex", ("F", "M")), ("race", ("A", "B")),
                                                       ("sex\u00d7race", ("F\u00d7A", "F\u00d7B", "M\u00d7A"))]
    np.testing.assert_array_equal(cells[0].counts, [[1, 1, 0, 0, 1], [0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(cells[1].counts, [[1, 0, 1, 1, 1], [0, 1, 0, 0, 0]])
