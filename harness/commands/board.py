"""``qskew board build``: assemble an emulated ARM board (Debian root + the runtime's ARM wheels).

    qskew board build --arch aarch64                       # ai-edge-litert 2.3.0, Python 3.11
    qskew board build --arch armv7l                        # tflite-runtime 2.14.0, Debian's numpy
    qskew board build --arch aarch64 --out /srv/boards/a64 --json

Progress goes to stderr; the board's folder is the one line on stdout (or a JSON document with the
manifest under --json). A board already built for the same content is reused at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew board`` to the ``qskew`` subparsers."""
    from harness.targets.board.spec import ARCHES, DEFAULT_PYTHON

    p = sub.add_parser("board", help="emulated ARM boards that run the runtime's real ARM build")
    bsub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    b = bsub.add_parser(
        "build", help="build (or reuse) a board root file system for an ARM architecture",
        description="Assemble a board from Debian's packages for the architecture (apt-get download + "
                    "dpkg -x) and the runtime's wheels for that platform (pip --platform), cached by "
                    "content under qskew's cache. Needs qemu-user-static and the architecture enabled "
                    "in dpkg (.ci/board-setup does both).",
        epilog="exit codes: 0 the board is ready; 2 it cannot be built (the message names the fix)")
    b.add_argument("--arch", required=True, choices=sorted(ARCHES),
                   help="aarch64 (arm64 packages) or armv7l (armhf packages)")
    b.add_argument("--python", default=DEFAULT_PYTHON, help="the board's Python (default %(default)s)")
    b.add_argument("--runtime", default="",
                   help="pip spec of the runtime (default: ai-edge-litert==2.3.0 for aarch64, "
                        "tflite-runtime==2.14.0 for armv7l, the newest with armv7 wheels)")
    b.add_argument("--numpy", default="",
                   help="pip spec of numpy, or 'debian' for Debian's python3-numpy (default: "
                        "numpy<2.3 for aarch64, debian for armv7l: PyPI has no armv7l numpy)")
    b.add_argument("--out", type=Path, default=None, help="build here instead of in qskew's cache")
    _common.add_json_flag(b, help="print the board folder and manifest as one JSON document")
    b.set_defaults(func=cmd_board_build)
    p.set_defaults(func=_common.print_group_help(p))


def cmd_board_build(args: argparse.Namespace) -> int:
    from harness.targets.board.build import build_board
    from harness.targets.board.spec import BoardSpec

    spec = BoardSpec(args.arch, args.python, args.runtime, args.numpy)
    board = build_board(spec, out=args.out, progress=_progress)
    if args.json:
        _common.print_json({"board": str(board.path), "manifest": board.manifest.to_json()})
    else:
        print(board.path)
    return 0


def _progress(message: str) -> None:
    print(f"board: {message}", file=sys.stderr, flush=True)
