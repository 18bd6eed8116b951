"""Device profiles: which variants an accelerator accepts, and how an artifact is made ready for it.

Placeholder while the Edge TPU profile is being built: every variant is accepted as it is.
"""

from __future__ import annotations

from typing import Callable

from harness.records import ModelArtifact


def refusal(spec, artifact: ModelArtifact, delegate: str) -> str | None:
    """Why the device ``spec`` cannot run ``artifact`` with ``delegate``, or None if it can."""
    return None


def prepare(spec, artifact: ModelArtifact, echo: Callable[[str], None] = lambda s: None) -> ModelArtifact:
    """The artifact this device runs for ``artifact`` (unchanged for devices without a profile)."""
    return artifact
