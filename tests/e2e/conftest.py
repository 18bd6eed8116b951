"""One real demo run (all six variants, local target) shared by the end-to-end tests."""

import pytest

from harness import cli


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert cli.main(["demo", "--out", str(out), "--no-progress"]) == 0
    return out


from support.board_env import aarch64_board, armv7l_board  # noqa: E402,F401  (fixtures: test_board_*.py)
