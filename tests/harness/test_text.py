"""harness/text.py: escaping what a device says before it reaches a terminal; table cells."""

from __future__ import annotations

import pytest

from harness.text import LINE_BREAKS, escape_controls, fit_cell

HOSTILE = "pixel\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\u202egnp.exe\0"


def test_control_characters_ansi_sequences_and_bidi_overrides_are_escaped():
    shown = escape_controls(HOSTILE)
    assert shown == "pixel\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f\\u202egnp.exe\\x00"
    assert shown.isprintable()
    assert escape_controls("ok é 名前 👩\u200d💻") == "ok é 名前 👩\u200d💻"  # printable text is left alone


@pytest.mark.parametrize("keep,expected", [("", "a\\nb\\tc\\x1b"), (LINE_BREAKS, "a\nb\tc\\x1b")])
def test_multi_line_text_may_keep_newlines_and_tabs(keep, expected):
    assert escape_controls("a\nb\tc\x1b", keep=keep) == expected


def test_table_cells_are_escaped_before_they_are_cut():
    assert fit_cell("grp\x1b[31mred", 40) == "grp\\x1b[31mred"
    assert fit_cell("a\nb", 10) == "a b"
    cell = fit_cell("\x1b" * 10, 8)
    assert cell == "\\x1b\\x1~" and "\x1b" not in cell
