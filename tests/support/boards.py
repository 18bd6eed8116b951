"""The "older board" environment built by `make board`: Python 3.9 + tflite-runtime 2.14 + numpy<2."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOARD_PYTHON = REPO / ".venv-board" / "bin" / "python"
needs_board = pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="no .venv-board (make board): Python 3.9 + "
                                 "tflite-runtime 2.14 + numpy<2 plays an older board")
