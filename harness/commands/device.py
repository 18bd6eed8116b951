"""Device commands: ``qskew device simulate`` and ``qskew devices check``."""

from __future__ import annotations


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
