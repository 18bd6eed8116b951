"""HTML pieces of the report: every value passes through :func:`esc`, numbers through :func:`num`.

Shared by ``render.py`` (the page and its core sections) and ``optional_sections.py``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any, Iterable, Mapping, Sequence


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def img(images: Mapping[str, bytes], name: str) -> str:
    if name not in images:
        return "<p class=\"note\">(no chart: no finished job)</p>"
    data = base64.b64encode(images[name]).decode("ascii")
    return f'<p><img alt="{esc(name)} chart" src="data:image/png;base64,{data}"></p>'


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="l"' if i in left else ""
        return f"<{tag}{cls}>{esc(value)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def kv_table(mapping: Mapping[str, Any]) -> str:
    return html_table(["key", "value"], [[k, compact(v)] for k, v in mapping.items()], left=(0, 1))


def compact(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else str(value)


def num(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def pp_ci(point: float, lo: float, hi: float) -> str:
    if point is None or not math.isfinite(point):
        return "–"
    return f"{100 * point:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def pct_ci(point: float, lo: float, hi: float) -> str:
    return f"{100 * point:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def pct1(x) -> str:
    return num(100 * x, ".1f")


def pct2(x) -> str:
    return num(100 * x, ".2f")


def pp2(x) -> str:
    return num(100 * x, "+.2f")
