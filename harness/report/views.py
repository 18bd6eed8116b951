"""The report seen one group attribute at a time.

A run with one group attribute (named "group": digits-groups, an image folder) has one chart and
one table per section, as it always had. A run with several (``groups = ["sex", "race"]``, and
with ``intersections`` their crossing "sex\u00d7race") gets, in every section, one sub-section per
attribute in :func:`harness.metrics.attributes.attribute_order`: a chart named
``<chart>-<attribute slug>`` and the rows of that attribute, each after the job's overall row.
Intersection sub-sections are titled as *cells*: small by nature, they carry their intervals and
warnings but never decide a sign-off (``harness.signoff``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from harness.metrics.attributes import Attributes, attribute_order, expand
from harness.records import CROSS, DEFAULT_ATTRIBUTE
from harness.report.markup import esc

if TYPE_CHECKING:
    import pandas as pd

Job = tuple[str, str, str]


def attributes_of(table: "pd.DataFrame") -> list[str]:
    """The attributes a statistics or metrics table has rows for, in table order ([] if none)."""
    if "attribute" not in table:
        return []
    return attribute_order(a for a in table["attribute"].astype(str) if a)


def several(attributes: Sequence[str]) -> bool:
    """Whether the report splits per attribute: anything but the one default attribute."""
    return list(attributes) not in ([], [DEFAULT_ATTRIBUTE])


def is_cell(attribute: str) -> bool:
    return CROSS in attribute


def chart_name(chart: str, attribute: str | None) -> str:
    """``accuracy`` for the one-attribute report; ``accuracy-sex``, ``accuracy-sex_x_race`` else."""
    if attribute is None:
        return chart
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", attribute.replace(CROSS, "_x_")).strip("-") or "attribute"
    return f"{chart}-{slug}"


def rows_of(table: "pd.DataFrame", attribute: str | None) -> "pd.DataFrame":
    """The overall rows and ``attribute``'s rows of a table with an ``attribute`` column (all if None)."""
    if attribute is None:
        return table
    keep = table["attribute"].astype(str).isin(["", attribute])
    return table[keep.to_numpy()]


def frames_of(frames: Mapping[Job, "pd.DataFrame"], attrs: Attributes,
              attribute: str | None) -> dict[Job, "pd.DataFrame"]:
    """Per-sample frames whose ``group`` is the sample's group of ``attribute`` (as stored if None)."""
    if attribute is None:
        return dict(frames)
    out = {}
    for job, frame in frames.items():
        view = expand(frame, attrs)
        out[job] = view[(view["attribute"] == attribute).to_numpy()].reset_index(drop=True)
    return out


def title(attribute: str) -> str:
    """How a chart names the attribute it shows: "sex", or "cell of sex×race"."""
    return f"cell of {attribute}" if is_cell(attribute) else attribute


def heading(attribute: str) -> str:
    """The sub-section heading of one attribute; intersections say they are cells and why they only warn."""
    if not is_cell(attribute):
        return f"<h3>{esc(attribute)}</h3>"
    return (f"<h3>{esc(attribute)}: intersectional cells</h3><p class=\"note\">Cells of the intersection are "
            "small by nature: read them with their intervals. Sign-off lets a cell WARN, never FAIL; the "
            "attributes' own groups decide PASS or FAIL.</p>")


def per_attribute(attributes: Sequence[str], body: Callable[[str | None], str]) -> str:
    """``body(None)`` for a one-attribute run; else each attribute's heading and ``body(attribute)``."""
    if not several(attributes):
        return body(None)
    return "".join(heading(a) + body(a) for a in attributes)


def split_shares(shares: Mapping[str, float], attrs: Attributes, attribute: str) -> dict[str, float]:
    """Per-cell shares (or counts) summed into the groups of ``attribute`` (a crossing keeps its cells)."""
    if attribute not in attrs.names:
        return {str(k): float(v) for k, v in shares.items()}
    index = attrs.names.index(attribute)
    out: dict[str, float] = {}
    for cell, value in shares.items():
        parts = str(cell).split(CROSS)
        key = parts[index] if index < len(parts) else str(cell)
        out[key] = out.get(key, 0.0) + float(value)
    return out
