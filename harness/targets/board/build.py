"""Build a board: an ARM root file system from Debian's packages plus the runtime's wheels.

Layout of a board folder (``<qskew cache>/boards/<arch>-py<python>-<key>/`` or ``--out DIR``)::

    root/            the board's ``/``: Debian packages unpacked with ``dpkg -x``, the runtime's
                     wheels in /usr/local/lib/python3.X/dist-packages, an empty /data/local/tmp
    cpuinfo          the ARM /proc/cpuinfo the sandbox mounts over the kernel's
    manifest.json    what is in it (manifest.py); written last

The board is built in a temporary folder beside its destination and renamed into place, so a board
folder is always complete, and two concurrent builds of one spec leave one board. Packages are not
configured (no maintainer scripts run): the few links a script would make are made here.

Example::

    board = build_board(BoardSpec("aarch64"), progress=print)
    board.root / "usr/bin/python3.11"
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from harness.fsutil import atomic_write_text
from harness.paths import cache_dir
from harness.targets.board import host
from harness.targets.board.cpuinfo import cpuinfo_text, sys_cpu_files
from harness.targets.board.manifest import Manifest, Package, Wheel, read_manifest, write_manifest
from harness.targets.board.spec import (DATA_DIR, BoardError, BoardSpec, deb_file_version,
                                        wheel_file_version)
from harness.targets.process import run_command

APT_TIMEOUT_S = 900.0   # ~40 packages (~25 MB) from a Debian mirror
DPKG_TIMEOUT_S = 120.0  # unpacking one package
PIP_TIMEOUT_S = 900.0   # the runtime's wheels (~50 MB for ai-edge-litert and numpy)
BOARD_CPUS = 4          # cores the generated /proc/cpuinfo lists (both reference boards have four)
# Folders every board has: mount points for the sandbox and Android's scratch folder.
ROOT_DIRS = ("proc", "dev", "sys", "tmp", "system", DATA_DIR)
# Links Debian's maintainer scripts (update-alternatives) would make for Debian's numpy.
ALTERNATIVE_LINKS = (("blas/libblas.so.3", "libblas.so.3"), ("lapack/liblapack.so.3", "liblapack.so.3"))

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Board:
    """A built board on the host."""

    path: Path
    manifest: Manifest

    @property
    def spec(self) -> BoardSpec:
        return self.manifest.spec

    @property
    def root(self) -> Path:
        return self.path / "root"

    @property
    def cpuinfo(self) -> Path:
        return self.path / "cpuinfo"


def board_dir(spec: BoardSpec) -> Path:
    """Where the cached board of ``spec`` lives."""
    return cache_dir("boards") / spec.folder_name()


def build_board(spec: BoardSpec, out: Path | None = None, progress: Progress | None = None) -> Board:
    """The board of ``spec`` in ``out`` (default: qskew's cache), built unless already there."""
    say = progress or (lambda _msg: None)
    dest = Path(out) if out is not None else board_dir(spec)
    existing = load_board(dest, spec)
    if existing is not None:
        say(f"board {spec.arch} already built: {dest}")
        return existing
    check_host(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".building", dir=dest.parent))
    try:
        _assemble(spec, work, say)
        _move_into_place(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    board = load_board(dest, spec)
    if board is None:
        raise BoardError(f"board folder {dest} has no manifest after the build")
    say(f"board {spec.arch} ready: {dest}")
    return board


def load_board(folder: Path, spec: BoardSpec | None = None) -> Board | None:
    """The board in ``folder`` (of ``spec`` if given); None if there is none. A folder holding
    something else, or another spec's board, is an error: qskew never overwrites it."""
    folder = Path(folder)
    if not folder.exists():
        return None
    manifest = read_manifest(folder)
    if manifest is None:
        raise BoardError(f"{folder} exists but is not a board (no manifest.json): choose another "
                         f"--out or remove it")
    if spec is not None and manifest.spec.cache_key() != spec.cache_key():
        raise BoardError(f"{folder} holds another board ({manifest.spec}), not {spec}: choose "
                         f"another --out or remove it")
    return Board(folder, manifest)


def check_host(spec: BoardSpec) -> None:
    """Every host tool and setting a build needs, checked before anything is fetched."""
    host.require_tool("apt-get", "it fetches the board's Debian packages")
    host.require_qemu(spec.profile)
    host.require_dpkg_arch(spec.profile)


def _assemble(spec: BoardSpec, work: Path, say: Progress) -> None:
    start = time.perf_counter()
    root = work / "root"
    root.mkdir()
    say(f"downloading {len(spec.packages())} Debian packages ({spec.profile.deb_arch})")
    packages = download_packages(spec, work / "debs")
    say(f"unpacking {len(packages)} packages into the root")
    for deb in sorted((work / "debs").glob("*.deb")):
        _dpkg_extract(deb, root)
    finish_root(spec, root)
    say(f"fetching wheels: {' '.join(spec.pip_requirements())}")
    wheels = install_wheels(spec, work / "wheels", root / spec.site_dir)
    atomic_write_text(work / "cpuinfo", cpuinfo_text(spec.arch, BOARD_CPUS), error=BoardError)
    shutil.rmtree(work / "debs")
    shutil.rmtree(work / "wheels")
    built_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_manifest(work, Manifest(spec, packages, wheels, built_at, round(time.perf_counter() - start, 1)))


def download_packages(spec: BoardSpec, folder: Path) -> tuple[Package, ...]:
    """``apt-get download`` every package of the root into ``folder``; (name, version) of each."""
    folder.mkdir()
    wanted = spec.packages()
    done = run_command(["apt-get", "download", "-q", *wanted], timeout_s=APT_TIMEOUT_S, cwd=folder,
                       env={"LC_ALL": "C"})
    if done.returncode != 0:
        raise host.apt_error(done.stderr + done.stdout, wanted, spec.profile)
    return tuple(Package(*deb_file_version(p.name)) for p in sorted(folder.glob("*.deb")))


def _dpkg_extract(deb: Path, root: Path) -> None:
    done = run_command(["dpkg", "-x", str(deb), str(root)], timeout_s=DPKG_TIMEOUT_S)
    if done.returncode != 0:
        raise BoardError(f"dpkg -x {deb.name} failed: {done.stderr.strip() or done.stdout.strip()}")


def finish_root(spec: BoardSpec, root: Path) -> None:
    """What dpkg's scripts would do and what the sandbox needs: folders, /bin/sh, library links."""
    for name in ROOT_DIRS:
        (root / name).mkdir(parents=True, exist_ok=True)
    if not (root / "bin/sh").is_symlink() and not (root / "bin/sh").exists():
        (root / "bin/sh").symlink_to("dash")
    libdir = root / "usr/lib" / spec.profile.triple
    for target, link in ALTERNATIVE_LINKS:
        if (libdir / target).exists() and not (libdir / link).exists():
            (libdir / link).symlink_to(target)
    for rel, text in sys_cpu_files(spec.arch, BOARD_CPUS).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "etc").mkdir(exist_ok=True)
    atomic_write_text(root / "etc/hostname", f"qskew-{spec.arch}\n", error=BoardError)


def install_wheels(spec: BoardSpec, folder: Path, site: Path) -> tuple[Wheel, ...]:
    """Download the runtime's wheels for the board's platform, then install them into ``site``."""
    pip = host.require_pip()
    platform = spec.pip_platform_args()
    reqs = spec.pip_requirements()
    got = run_command([*pip, "download", "-q", "-d", str(folder), *platform, *reqs],
                      timeout_s=PIP_TIMEOUT_S, env={"PIP_NO_INPUT": "1"})
    if got.returncode != 0:
        raise host.pip_error(got.stdout + got.stderr, reqs, spec.profile.pip_platforms, spec.python)
    done = run_command([*pip, "install", "-q", "--no-index", "--find-links", str(folder), "--target",
                        str(site), "--no-compile", *platform, *reqs], timeout_s=PIP_TIMEOUT_S,
                       env={"PIP_NO_INPUT": "1"})
    if done.returncode != 0:
        raise BoardError(f"pip install into the board failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return tuple(Wheel(*wheel_file_version(w.name), w.name, _sha256(w)) for w in sorted(folder.glob("*.whl")))


def _move_into_place(work: Path, dest: Path) -> None:
    """Rename the finished build to ``dest``; if a concurrent build got there first, keep theirs."""
    try:
        os.rename(work, dest)
    except OSError:
        if read_manifest(dest) is None:
            raise BoardError(f"cannot move the built board into {dest}: it exists and is not a board")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
