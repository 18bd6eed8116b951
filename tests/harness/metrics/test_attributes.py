"""Group attributes and their intersection (harness/metrics/attributes.py), on their own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.metrics.attributes import (CELL_SCOPE, GROUP_SCOPE, Attributes, attribute_order, cell_sizes, expand,
                                        first_attribute_rows, group_sizes, qualified, scope_of)

X = "\u00d7"
CELLS = np.array([f"Female{X}Black", f"Male{X}White", f"Female{X}White", f"Male{X}White", f"Female{X}Other"])
SEX_RACE = Attributes(names=("sex", "race"), intersections=True)


def test_reported_attributes_and_their_crossing():
    assert Attributes().reported == ("group",)
    assert Attributes(("sex", "race")).reported == ("sex", "race")
    assert SEX_RACE.reported == ("sex", "race", f"sex{X}race")
    assert Attributes(("sex",), intersections=True).reported == ("sex",)   # one attribute has no crossing


def test_json_round_trip_and_runs_written_before_attributes():
    assert Attributes.from_json(SEX_RACE.to_json()) == SEX_RACE
    assert SEX_RACE.to_json() == {"attributes": ["sex", "race"], "intersections": True}
    assert Attributes.from_json(None) == Attributes.from_json({"name": "digits"}) == Attributes()


def test_scope_and_qualified_names():
    assert scope_of("sex") == GROUP_SCOPE and scope_of(f"sex{X}race") == CELL_SCOPE
    assert qualified("group", "minority") == "minority"
    assert qualified("sex", "Female") == "sex=Female"
    assert qualified(f"sex{X}race", f"Female{X}Black") == f"sex{X}race=Female{X}Black"


def test_expand_gives_each_attribute_every_sample_once():
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(len(CELLS))], "group": CELLS, "correct": [1, 0, 1, 1, 0]})
    out = expand(frame, SEX_RACE)
    assert len(out) == 3 * len(frame)
    for attribute in SEX_RACE.reported:
        part = out[out["attribute"] == attribute]
        assert list(part["id"]) == list(frame["id"])                 # every sample, once, in order
        assert list(part["correct"]) == list(frame["correct"])
    assert list(out.loc[out["attribute"] == "sex", "group"]) == ["Female", "Male", "Female", "Male", "Female"]
    assert list(out.loc[out["attribute"] == "race", "group"]) == ["Black", "White", "White", "White", "Other"]
    assert list(out.loc[out["attribute"] == f"sex{X}race", "group"]) == list(CELLS)
    assert len(expand(frame, Attributes(("sex", "race")))) == 2 * len(frame)   # no crossing without intersections
    assert list(first_attribute_rows(out)["group"]) == ["Female", "Male", "Female", "Male", "Female"]


def test_expand_leaves_one_attribute_and_expanded_frames_alone():
    frame = pd.DataFrame({"group": ["a", "b", "a"]})
    plain = expand(frame, None)
    assert list(plain["attribute"]) == ["group"] * 3 and list(plain["group"]) == ["a", "b", "a"]
    assert expand(plain, SEX_RACE) is plain
    empty = expand(pd.DataFrame({"group": pd.Series([], dtype=str)}), SEX_RACE)
    assert len(empty) == 0 and "attribute" in empty


def test_attribute_order_puts_intersections_last():
    assert attribute_order([f"sex{X}race", "sex", "race", "sex"]) == ["race", "sex", f"sex{X}race"]


@pytest.mark.parametrize("attrs", [SEX_RACE, Attributes(("sex", "race"))])
def test_cell_sizes_sum_to_n_for_every_attribute(attrs):
    sizes = cell_sizes(CELLS, attrs)
    for attribute in attrs.reported:
        assert sum(n for (a, _), n in sizes.items() if a == attribute) == len(CELLS)
    assert sizes[("sex", "Female")] == 3 and sizes[("race", "White")] == 3
    assert sizes.get((f"sex{X}race", f"Male{X}White")) == (2 if attrs.intersections else None)


@pytest.mark.parametrize("attrs", [SEX_RACE, Attributes(("sex", "race")), Attributes(), Attributes(("a", "b", "c"))])
def test_group_sizes_from_counts_are_expands_groups(attrs):
    """Counting on the cell counts (no pandas) gives what grouping the expanded frame gives, also
    for a cell with fewer parts than attributes (left out of the missing attribute's groups)."""
    cells = np.append(CELLS, ["Male", "Male"])
    expected = expand(pd.DataFrame({"group": cells}), attrs).groupby(["attribute", "group"], sort=True).size()
    names, counts = np.unique(cells, return_counts=True)
    got = group_sizes(dict(zip(names.tolist(), counts.tolist())), attrs)
    assert got == {(a, g): int(n) for (a, g), n in expected.items()}
    assert list(got) == sorted(got) and cell_sizes(cells, attrs) == got
