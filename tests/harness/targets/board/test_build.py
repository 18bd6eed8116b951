"""Building boards: reuse and refusal of existing folders (unit); a real aarch64 board that runs the
device runner on the tiny int8 model and differs from the host's x86 kernels with ``builtin`` (slow).
"""

import json

import numpy as np
import pytest

from harness.targets.board.build import build_board, load_board
from harness.targets.board.manifest import MANIFEST_FILE, Manifest, write_manifest
from harness.targets.board.spec import BoardError, BoardSpec
from tests.support import tiny_models
from tests.support.board_jobs import lay_out_job, run_job_in_board, run_job_on_host, step_diffs

N_SAMPLES = 64  # 640 logits: enough for builtin's rounding differences to show, quick under qemu


def test_a_finished_board_is_reused_without_building(tmp_path, monkeypatch):
    spec = BoardSpec("aarch64")
    write_manifest(tmp_path, Manifest(spec, (), (), "2026-01-01T00:00:00+00:00", 1.0))
    monkeypatch.setattr("harness.targets.board.build.check_host", lambda s: pytest.fail("built again"))
    assert build_board(spec, out=tmp_path).path == tmp_path


def test_existing_folders_are_never_overwritten(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(BoardError, match="is not a board"):
        build_board(BoardSpec("aarch64"), out=tmp_path / "stuff")
    write_manifest(tmp_path, Manifest(BoardSpec("armv7l"), (), (), "2026-01-01T00:00:00+00:00", 1.0))
    with pytest.raises(BoardError, match="holds another board"):
        load_board(tmp_path, BoardSpec("aarch64"))
    assert load_board(tmp_path / "absent") is None


@pytest.mark.slow
def test_built_board_has_its_manifest_and_layout(aarch64_board):
    data = json.loads((aarch64_board.path / MANIFEST_FILE).read_text())
    wheels = {w["name"]: w for w in data["wheels"]}
    assert wheels["ai_edge_litert"]["version"] == "2.3.0" and len(wheels["ai_edge_litert"]["sha256"]) == 64
    assert wheels["numpy"]["version"] < "2.3"
    names = {p["name"] for p in data["packages"]}
    assert {"python3.11-minimal", "dash", "coreutils", "libc6"} <= names
    root = aarch64_board.root
    assert (root / "data/local/tmp").is_dir() and (root / "usr/bin/python3").exists()
    assert (root / "usr/local/lib/python3.11/dist-packages/ai_edge_litert").is_dir()
    assert "CPU part\t: 0xd0b" in aarch64_board.cpuinfo.read_text()


@pytest.fixture(scope="module")
def int8_runs(aarch64_board, tmp_path_factory):
    """The tiny int8 model with each kernel set, on the board and on the host: {delegate: (board, host)}."""
    from harness.paths import cache_dir

    model = tiny_models.build_models(cache_dir("tiny-models"))["int8"]
    x = tiny_models.make_inputs(N_SAMPLES, seed=5)
    runs = {}
    for delegate in ("builtin", "xnnpack", "reference"):
        board_dir, host_dir = tmp_path_factory.mktemp(f"board-{delegate}"), tmp_path_factory.mktemp(f"host-{delegate}")
        lay_out_job(board_dir, "job", model, x, delegate)
        lay_out_job(host_dir, "job", model, x, delegate)
        runs[delegate] = (run_job_in_board(aarch64_board, board_dir, "job"), run_job_on_host(host_dir, "job"))
    return runs


@pytest.mark.slow
def test_runner_on_the_board_computes_with_arm_kernels(int8_runs):
    (out, result), _ = int8_runs["xnnpack"]
    assert out.shape == (N_SAMPLES, tiny_models.NUM_CLASSES) and out.dtype == np.int8
    assert result["status"] == "ok" and result["runtime"] == "ai_edge_litert"
    assert result["platform"].endswith("aarch64-with-glibc2.36")
    assert result["delegate_applied"] == "xnnpack"  # cpuinfo initialised: XNNPACK took the graph


@pytest.mark.slow
def test_builtin_kernels_differ_from_the_host_while_xnnpack_and_reference_agree(int8_runs):
    diffs = {d: step_diffs(board[0], host[0]) for d, (board, host) in int8_runs.items()}
    print("board vs host (logits differing, max output steps):", diffs)
    assert diffs["xnnpack"] == (0, 0) and diffs["reference"] == (0, 0)
    n_diff, max_steps = diffs["builtin"]
    assert n_diff > 0, "the tiny int8 model shows no ARM-vs-x86 difference with builtin kernels"
    assert max_steps == 1
