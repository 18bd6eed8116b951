"""The session's aarch64 (and armv7l) board, built once (cached in qskew's cache folder) for the slow tests;
the conftest of each folder whose tests need it imports the fixture from here.

Under CI (the ``CI`` variable set, as .ci/run does), a host that cannot build or enter a board is a
test FAILURE: a skipped board test must never be how CI goes green. Elsewhere it is a skip that
says why.
"""

from __future__ import annotations

import os

import pytest

from harness.targets.board.spec import BoardError, BoardSpec


def unavailable(reason: str):
    """Fail under CI, skip elsewhere, with ``reason``."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"board unavailable under CI: {reason}")
    pytest.skip(reason)


def _board(arch: str):
    from harness.targets.board.build import build_board

    if os.geteuid() != 0:
        unavailable("the board sandbox needs root (mount namespace, binfmt_misc, chroot)")
    try:
        return build_board(BoardSpec(arch))
    except BoardError as exc:
        unavailable(f"cannot build an {arch} board: {exc}")


@pytest.fixture(scope="session")
def aarch64_board():
    return _board("aarch64")


@pytest.fixture(scope="session")
def armv7l_board():
    """tflite-runtime 2.14.0, Debian's armhf numpy, qemu-arm."""
    return _board("armv7l")
