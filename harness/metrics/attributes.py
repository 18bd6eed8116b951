"""Group attributes and their intersection: one per-sample frame seen as each attribute's groups.

A dataset with one group attribute (named "group", e.g. digits-groups or an image folder) keeps its
group labels as they are. A dataset with several (``groups = ["sex", "race"]``) stores each sample's
*cell*, the values joined by CROSS ("Female\u00d7Black"), in the per-sample ``group`` column. :func:`expand`
turns a per-sample frame into one row per sample *and attribute*: for "sex" the group is the
sample's sex, for "race" its race, and with ``intersections`` for "sex\u00d7race" its cell. Every
attribute's rows cover the whole test set once, so each attribute's groups sum to n.

Intersectional cells are small by nature, so they are told apart by ``scope``: attribute-level rows
have scope "group", intersection rows scope "cell". Tables and reports show both; sign-off's PASS
or FAIL comes from the "group" rows, while a cell can at most WARN (``harness.signoff``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from harness.records import CROSS, DEFAULT_ATTRIBUTE

if TYPE_CHECKING:
    import pandas as pd

GROUP_SCOPE = "group"
CELL_SCOPE = "cell"


@dataclass(frozen=True)
class Attributes:
    """The group attributes of a dataset or run, and whether their intersection is reported."""

    names: tuple[str, ...] = (DEFAULT_ATTRIBUTE,)
    intersections: bool = False

    @property
    def reported(self) -> tuple[str, ...]:
        """The attributes the tables have rows for: each name, then the crossing if reported."""
        return self.names + ((self.crossing,) if self.intersections and len(self.names) > 1 else ())

    @property
    def crossing(self) -> str:
        return CROSS.join(self.names)

    def to_json(self) -> dict:
        return {"attributes": list(self.names), "intersections": self.intersections}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Attributes":
        """From a manifest's dataset entry; older runs (no "attributes") have the one "group"."""
        data = data or {}
        names = tuple(data.get("attributes") or (DEFAULT_ATTRIBUTE,))
        return cls(names=names, intersections=bool(data.get("intersections", False)))


def scope_of(attribute: str) -> str:
    """"cell" for an intersection of attributes, "group" for one attribute."""
    return CELL_SCOPE if CROSS in attribute else GROUP_SCOPE


def qualified(attribute: str, group: str) -> str:
    """A group's name across attributes: "sex=Female"; the one "group" attribute's plain name."""
    return group if attribute == DEFAULT_ATTRIBUTE else f"{attribute}={group}"


def expand(frame: "pd.DataFrame", attrs: Attributes | None) -> "pd.DataFrame":
    """``frame`` (per-sample, ``group`` = cell) with an ``attribute`` column, once per reported attribute.

    The one-attribute case (``attrs`` None or the default) returns the same rows with attribute
    "group"; a frame that already has the column is returned as it is.
    """
    import pandas as pd

    attrs = attrs or Attributes()
    if attrs.names == (DEFAULT_ATTRIBUTE,) or "attribute" in frame:
        return frame if "attribute" in frame else frame.assign(attribute=DEFAULT_ATTRIBUTE)
    cells = frame["group"].astype(str).to_numpy(dtype=object)
    # Split each distinct cell once (a test set has thousands of samples, a handful of cells).
    codes, distinct = pd.factorize(cells)
    split = [str(cell).split(CROSS) for cell in distinct]
    width = max((len(parts) for parts in split), default=0)
    views = []
    for i, name in enumerate(attrs.names):
        if i < width:  # a cell with fewer parts has no value for this attribute (None)
            values = np.array([parts[i] if i < len(parts) else None for parts in split], dtype=object)[codes]
        else:
            values = cells
        views.append(frame.assign(attribute=name, group=values))
    if attrs.intersections and len(attrs.names) > 1:
        views.append(frame.assign(attribute=attrs.crossing))
    return pd.concat(views, ignore_index=True)


def first_attribute_rows(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The rows of an expanded frame's first attribute: every sample exactly once."""
    first = frame["attribute"].iloc[0] if len(frame) else DEFAULT_ATTRIBUTE
    return frame[frame["attribute"].to_numpy() == first]


def attribute_order(names) -> list[str]:
    """Attributes in table order: single attributes by name, then intersections by name."""
    return sorted(set(names), key=lambda a: (CROSS in a, a))


def cell_sizes(cells: np.ndarray, attrs: Attributes) -> dict[tuple[str, str], int]:
    """Test samples per (attribute, group) from the per-sample cell labels."""
    names, counts = np.unique(np.asarray(cells).astype(str), return_counts=True)
    return group_sizes(dict(zip(names.tolist(), counts.tolist())), attrs)


def group_sizes(counts: Mapping[str, int], attrs: Attributes) -> dict[tuple[str, str], int]:
    """Samples per (attribute, group), sorted, from samples per cell label: what :func:`expand` makes
    of a frame, done on the counts (no pandas). A cell with no value for an attribute is left out
    of that attribute's groups, as ``groupby`` leaves out :func:`expand`'s None.

    Example::

        group_sizes({"F\u00d7A": 3, "M\u00d7A": 2}, Attributes(("sex", "race")))
        # {("race", "A"): 5, ("sex", "F"): 3, ("sex", "M"): 2}
    """
    sizes: dict[tuple[str, str], int] = {}
    if attrs.names == (DEFAULT_ATTRIBUTE,):
        return {(DEFAULT_ATTRIBUTE, str(cell)): int(n) for cell, n in sorted(counts.items())}
    split = {str(cell): str(cell).split(CROSS) for cell in counts}
    width = max((len(parts) for parts in split.values()), default=0)
    for cell, n in counts.items():
        parts = split[str(cell)]
        keys = [(name, parts[i] if i < len(parts) else None) if i < width else (name, str(cell))
                for i, name in enumerate(attrs.names)]
        if attrs.intersections and len(attrs.names) > 1:
            keys.append((attrs.crossing, str(cell)))
        for key in keys:
            if key[1] is not None:
                sizes[key] = sizes.get(key, 0) + int(n)
    return dict(sorted(sizes.items()))
