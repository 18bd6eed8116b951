"""A built board's manifest (``manifest.json`` beside its root): what is in it and how it was made.

Written last by the build (the folder is renamed into place after it), so a board folder with a
manifest whose ``cache_key`` matches its spec is complete. JSON fields: ``board_format``, ``arch``,
``python``, ``runtime``, ``numpy``, ``cache_key``, ``packages`` ([{name, version}]), ``wheels``
([{name, version, file, sha256}]), ``built_at`` (UTC, ISO 8601), ``build_s``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.fsutil import atomic_write_text, dumps_json
from harness.targets.board.spec import BOARD_FORMAT, BoardError, BoardSpec

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Package:
    """One Debian package unpacked into the root."""

    name: str
    version: str


@dataclass(frozen=True)
class Wheel:
    """One wheel installed into the root's site folder; ``sha256`` of the wheel file."""

    name: str
    version: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a board holds, with the spec it was built from."""

    spec: BoardSpec
    packages: tuple[Package, ...]
    wheels: tuple[Wheel, ...]
    built_at: str
    build_s: float
    board_format: int = BOARD_FORMAT

    def runtime_version(self) -> str:
        """The version of the runtime wheel (the spec's distribution), or "" if it is missing."""
        wanted = _norm(self.spec.runtime.split("=")[0].split("<")[0].split(">")[0])
        return next((w.version for w in self.wheels if _norm(w.name) == wanted), "")

    def to_json(self) -> dict:
        s = self.spec
        return {"board_format": self.board_format, "arch": s.arch, "python": s.python,
                "runtime": s.runtime, "numpy": s.numpy, "cache_key": s.cache_key(),
                "packages": list(self.packages), "wheels": list(self.wheels),
                "built_at": self.built_at, "build_s": self.build_s}

    @classmethod
    def from_json(cls, data: dict) -> "Manifest":
        spec = BoardSpec(data["arch"], data["python"], data["runtime"], data["numpy"])
        return cls(spec=spec, packages=tuple(Package(**p) for p in data["packages"]),
                   wheels=tuple(Wheel(**w) for w in data["wheels"]), built_at=data["built_at"],
                   build_s=float(data["build_s"]), board_format=int(data["board_format"]))


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``folder/manifest.json`` atomically."""
    atomic_write_text(folder / MANIFEST_FILE, dumps_json(manifest.to_json()), error=BoardError)


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of the board in ``folder``; None if there is none (not a finished board)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BoardError(f"board manifest {path} is unreadable: {exc}") from exc
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BoardError(f"board manifest {path} is malformed ({exc!r}); delete the folder and "
                         f"build again") from exc


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name: ai-edge-litert == ai_edge_litert."""
    return name.strip().lower().replace("_", "-").replace(".", "-")
