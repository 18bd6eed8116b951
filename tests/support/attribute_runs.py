"""A synthetic run with two group attributes, sex (F, M) and race (A, B), and their intersection.

int8 hurts the F\u00d7B cell most; int8-qat (a mitigated variant, ``harness.metrics.mitigation.ROLES``)
less. Imported by the tests as ``support.attribute_runs``.
"""

from __future__ import annotations

from pathlib import Path

from support.synthetic_runs import make_run_dir

CROSS = "\u00d7"
CELL_SIZES = {f"F{CROSS}A": 300, f"F{CROSS}B": 120, f"M{CROSS}A": 400, f"M{CROSS}B": 130}
VARIANTS = {
    "fp32": {},
    "int8": {f"F{CROSS}A": (0.9, 0.4), f"F{CROSS}B": (0.4, 1.6), f"M{CROSS}A": (0.9, 0.4), f"M{CROSS}B": (0.8, 0.6)},
    "int8-qat": {f"F{CROSS}A": (0.9, 0.3), f"F{CROSS}B": (0.8, 0.6), f"M{CROSS}A": (0.9, 0.3), f"M{CROSS}B": (0.9, 0.4)},
}


def make_attribute_run(path: Path, **kwargs) -> Path:
    """The run directory at ``path`` (``make_run_dir`` keyword arguments override the defaults)."""
    options = {"sizes": CELL_SIZES, "variants": VARIANTS, "attributes": ("sex", "race"), "intersections": True}
    return make_run_dir(path, **(options | kwargs))
