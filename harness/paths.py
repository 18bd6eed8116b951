"""Where qskew keeps things on the host: one cache folder for trained models and converted variants."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "QSKEW_CACHE_DIR"  # override the cache location (tests point it at a temp folder)


def cache_dir(sub: str = "") -> Path:
    """``$QSKEW_CACHE_DIR`` or ``~/.cache/qskew``, plus an optional sub-folder; created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qskew")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
