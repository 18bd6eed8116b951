"""``qskew mitigate``: quantization-aware training and group-aware calibration as new variants."""

from __future__ import annotations


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
