"""Text for terminals: table cells, number cells, the tail of a long output, and escaping.

Leaf module (standard library only), so errors, tables and logs at every layer can share it.
Names, properties and errors that come from a device (or a dataset) may hold control characters;
``escape_controls`` turns them into visible escapes, so nothing reaches a terminal raw (an ESC
would start an ANSI sequence that recolours, moves the cursor or rewrites the title). Table cells
(``fit_cell``), the CLI's error line and the log formatter all go through it.
"""

from __future__ import annotations

import math
import unicodedata

TAIL_CHARS = 600  # enough of a command's output to show the cause without flooding the terminal


# Bidirectional overrides and isolates: not control characters, but they reorder what a terminal shows.
BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LINE_BREAKS = "\n\t"  # what multi-line text (errors, log records) keeps: newline and tab


def escape_controls(text: object, keep: str = "") -> str:
    """``str(text)`` with every control character (C0, DEL, C1; ESC starts ANSI sequences) and
    bidi override written as a visible escape, except the characters in ``keep``.

    >>> escape_controls("pixel\x1b[2J7\u202e")
    'pixel\\x1b[2J7\\u202e'
    >>> escape_controls("a\nb\tc", keep=LINE_BREAKS)
    'a\nb\tc'
    """
    text = str(text)
    if text.isprintable() and not keep:
        return text
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if c not in keep and (unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS) else c
                   for c in text)


def fit_cell(text: object, width: int) -> str:
    """``text`` on one line, control characters escaped, cut to ``width`` characters (a cut ends in
    "~") for a table cell."""
    text = escape_controls(str(text).replace("\n", " "))
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


def nan_cell(x: float | None, spec: str, scale: float = 1.0, missing: str = "n/a") -> str:
    """``format(scale * x, spec)``, ``missing`` for None or NaN (a number the table could not have)."""
    return missing if x is None or math.isnan(x) else format(scale * x, spec)
