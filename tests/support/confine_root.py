"""A smallest device root for confinement tests: empty /proc, /dev, /usr mount points, a writable
/data/local/tmp, and the host's /bin, /lib... links into /usr (merged-/usr Debian)."""

from __future__ import annotations

import os
from pathlib import Path


def make_tiny_root(root: Path) -> Path:
    for folder in ("proc", "dev", "usr", "data/local/tmp"):
        (root / folder).mkdir(parents=True)
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            (root / name).symlink_to(os.readlink(f"/{name}"))
    return root
