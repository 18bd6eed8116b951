"""Analysis commands: ``qskew analyze``, ``qskew suggest-mixed`` and ``qskew mitigate``."""

from __future__ import annotations


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
