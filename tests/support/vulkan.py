"""SwiftShader's Vulkan for LiteRT's GPU accelerator in tests (Debian's chromium installs its ICD;
libvulkan1 is the loader). Where either is missing a GPU test skips with the reason -- except
under CI (``CI`` set), where that is a failure: CI can never go green by skipping the GPU."""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

import pytest

SWIFTSHADER_ICD = Path("/usr/lib/chromium/vk_swiftshader_icd.json")


def use_swiftshader(monkeypatch, tmp_path: Path) -> None:
    """Point the Vulkan loader at SwiftShader (and XDG_RUNTIME_DIR at a private folder), or skip
    (fail under CI) naming what is missing."""
    missing = [what for what, ok in (("libvulkan1 (the Vulkan loader)", ctypes.util.find_library("vulkan")),
                                     (f"SwiftShader's ICD {SWIFTSHADER_ICD} (Debian: chromium)",
                                      SWIFTSHADER_ICD.is_file())) if not ok]
    if missing:
        message = "no Vulkan device for LiteRT's GPU: missing " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI installs them (.ci/run); a skipped GPU must not pass CI")
        pytest.skip(message)
    runtime_dir = tmp_path / "xdg-runtime"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setenv("VK_ICD_FILENAMES", str(SWIFTSHADER_ICD))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
