"""Text for terminals: table cells, number cells and the tail of a long output.

Leaf module (standard library only), so errors, tables and logs at every layer can share it.
"""

from __future__ import annotations

import math

TAIL_CHARS = 600  # enough of a command's output to show the cause without flooding the terminal


def fit_cell(text: object, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters (a cut ends in "~") for a table cell."""
    text = str(text).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "~"


def name_width(names, minimum: int) -> int:
    """Width of a column of names: ``minimum``, widened to the longest name. Group and device names
    are never cut: two names cut to one width can look alike ("north-east-rural" and
    "north-east-urban" both "north-east-r~")."""
    return max([minimum] + [len(str(n).replace("\n", " ")) for n in names])


def tail(text: str | None, max_chars: int = TAIL_CHARS) -> str:
    """The last ``max_chars`` characters of ``text`` (stripped), "..." in front when cut."""
    text = (text or "").strip()
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


def ratio_cell(a: float, b: float) -> str:
    """a / b with 3 decimals, "-" when it is undefined."""
    return f"{a / b:.3f}" if b and math.isfinite(a) and math.isfinite(b) else "-"


def pp_cell(x: float | None) -> str:
    """A fraction as signed percentage points ("+1.25"), "-" for None."""
    return "-" if x is None else f"{100 * x:+.2f}"


def pct_cell(x: float | None) -> str:
    """A fraction as a percentage ("97.4"), "-" for None."""
    return "-" if x is None else f"{100 * x:.1f}"


def num_cell(x: float | None, spec: str) -> str:
    """``format(x, spec)``, "-" for None."""
    return "-" if x is None else format(x, spec)
