"""The aarch64 board fixture (tests/support/board_env.py) for the board tests."""

from support.board_env import aarch64_board  # noqa: F401  (a pytest fixture)
