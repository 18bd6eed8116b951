"""device_runner/run.py as a subprocess on real job folders, with real .tflite models and runtimes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from device_runner import protocol

REPO = Path(__file__).resolve().parents[2]
BOARD_PYTHON = REPO / ".venv-board" / "bin" / "python"  # Python 3.9 + tflite-runtime 2.14 + numpy<2


def ok_run(run_runner, runner, folder, **kw):
    proc, result = run_runner(runner, folder, **kw)
    assert proc.returncode == protocol.EXIT_OK, proc.stdout + proc.stderr
    assert result["status"] == "ok", result
    return proc, result, np.load(folder / "outputs.npy", allow_pickle=False)


def test_handshake_comes_first_and_result_has_every_field(run_runner, board_runner, job_folder, tiny_tflite):
    proc, result, out = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"]))
    first = proc.stdout.splitlines()[0]
    assert first.startswith(protocol.HANDSHAKE_PREFIX + " ")
    assert protocol.parse_handshake(first)["protocol"] == protocol.PROTOCOL_VERSION
    convert = protocol.parse_handshake(first)["convert"]  # measured at start (1.5)
    assert convert in ("scale", "table")
    assert set(protocol.RESULT_FIELDS) <= set(result)
    assert result["runtime"] == "ai_edge_litert" and result["runtime_version"]
    assert result["python"] and result["numpy"] == np.__version__ and result["platform"]
    assert result["num_threads"] == 2 and result["n_samples"] == 150
    assert result["input"]["dtype"] == "float32" and result["input"]["shape_signature"][0] == -1
    assert result["input"]["conversion"] == convert
    output = dict(result["output"])
    digest = output.pop("sha256")
    assert output == {"file": "outputs.npy", "dtype": "float32", "shape": [150, 10], "scale": 0.0, "zero_point": 0}
    assert digest == hashlib.sha256((job_folder(tiny_tflite["fp32"]) / "outputs.npy").read_bytes()).hexdigest()
    assert out.dtype == np.float32 and out.shape == (150, 10)
    assert not list(job_folder(tiny_tflite["fp32"]).glob("*.tmp-*"))  # atomic writes left nothing behind
    timings = result["timings"]
    assert {"load_s", "prepare_s", "invoke_s", "total_s", "per_batch_s"} <= set(timings)
    assert timings["total_s"] >= timings["invoke_s"] >= sum(timings["per_batch_s"]) > 0


def test_dynamic_batch_model_runs_in_batches_of_64(run_runner, board_runner, job_folder, tiny_tflite):
    _, result, out = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"], batch_size=64))
    assert result["batch_size"] == 64
    assert len(result["timings"]["per_batch_s"]) == 3  # 64 + 64 + 22
    assert np.isfinite(out).all() and len(np.unique(out.argmax(1))) > 1


def test_fixed_batch_model_runs_one_at_a_time_with_the_same_rows(run_runner, board_runner, job_folder,
                                                                 tiny_tflite):
    _, dyn, batched = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"]))
    _, fixed, single = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fixed1"], batch_size=64))
    assert fixed["batch_size"] == 1 and len(fixed["timings"]["per_batch_s"]) == 150
    assert fixed["input"]["shape_signature"][0] == 1
    np.testing.assert_allclose(single, batched, rtol=1e-5, atol=1e-5)  # same weights, rows in order


def test_fixed_batch_of_four_pads_the_last_batch_and_drops_the_padding(run_runner, board_runner,
                                                                        job_folder, tiny_tflite):
    _, _, batched = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"]))
    _, fixed, four = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fixed4"], n=150))
    assert fixed["batch_size"] == 4 and len(fixed["timings"]["per_batch_s"]) == 38  # 37 x 4 + 2
    assert four.shape == (150, 10)
    np.testing.assert_allclose(four, batched, rtol=1e-5, atol=1e-5)


def test_int8_model_gets_int8_inputs_and_outputs(run_runner, board_runner, job_folder, tiny_tflite):
    _, result, out = ok_run(run_runner, board_runner, job_folder(tiny_tflite["int8"]))
    assert out.dtype == np.int8 and out.shape == (150, 10)
    assert result["output"]["dtype"] == "int8" and result["output"]["scale"] > 0
    assert result["input"]["dtype"] == "int8" and result["input"]["scale"] > 0
    assert result["delegate_applied"] == "xnnpack"


def test_delegate_applied_is_read_from_the_execution_plan(run_runner, board_runner, job_folder, tiny_tflite):
    _, xnn, _ = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"], delegate="xnnpack"))
    plan = xnn["execution_plan"]
    assert xnn["delegate_applied"] == "xnnpack"
    assert 0 < plan["delegated_nodes"] <= plan["nodes"] == len(plan["ops"])
    assert plan["delegate_partitions"] >= 1 and "CONV_2D" not in plan["cpu_ops"]
    placed = plan["placement"]  # protocol 1.2: node by node, consistent with the counts
    assert [p["op"] for p in placed] == plan["ops"]
    assert sum(p["on"] == "delegate" for p in placed) == plan["delegated_nodes"]
    assert sorted(p["op"] for p in placed if p["on"] == "cpu") == sorted(plan["cpu_ops"])
    for delegate in ("reference", "builtin"):
        _, other, _ = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"], delegate=delegate))
        assert other["delegate_requested"] == delegate and other["delegate_applied"] == "none"
        assert other["execution_plan"]["delegated_nodes"] == 0
        assert other["execution_plan"]["cpu_ops"] == plan["ops"]
        assert {p["on"] for p in other["execution_plan"]["placement"]} == {"cpu"}


def test_int16x8_model_has_no_xnnpack_path(run_runner, board_runner, job_folder, tiny_tflite):
    _, result, out = ok_run(run_runner, board_runner, job_folder(tiny_tflite["int16x8"], delegate="xnnpack"))
    assert result["delegate_requested"] == "xnnpack" and result["delegate_applied"] == "none"
    assert result["execution_plan"]["delegated_nodes"] == 0
    assert out.dtype == np.float32 and out.shape == (150, 10)


def test_truncated_model_is_a_runtime_error_with_the_runtimes_message(run_runner, board_runner, job_folder,
                                                                      tiny_tflite, tmp_path):
    broken = tmp_path / "broken.tflite"
    data = tiny_tflite["fp32"].read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    proc, result = run_runner(board_runner, job_folder(broken))
    assert proc.returncode == protocol.EXIT_RUNTIME
    assert result["status"] == "error" and result["error_kind"] == "model_load"
    assert str(broken) in result["error"] and len(result["error"]) > len(str(broken)) + 20
    assert not (tmp_path / "job" / "outputs.npy").exists()


def test_rerun_never_leaves_the_previous_result_behind(run_runner, board_runner, job_folder, tiny_tflite,
                                                       tmp_path):
    folder = job_folder(tiny_tflite["fp32"])
    ok_run(run_runner, board_runner, folder)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    proc, result = run_runner(board_runner, job_folder(broken))
    assert result["status"] == "error" and not (folder / "outputs.npy").exists()


def test_other_protocol_major_is_refused(run_runner, board_runner, job_folder, tiny_tflite):
    proc, result = run_runner(board_runner, job_folder(tiny_tflite["fp32"], protocol="2.0"))
    assert proc.returncode == protocol.EXIT_PROTOCOL
    assert result["status"] == "error" and result["error_kind"] == "job" and "2.0" in result["error"]
    assert protocol.parse_handshake(proc.stdout) is not None  # the handshake still comes first


def test_unknown_delegate_is_a_bad_job(run_runner, board_runner, job_folder, tiny_tflite):
    folder = job_folder(tiny_tflite["fp32"])
    job = (folder / "job.json").read_text().replace('"xnnpack"', '"hexagonal"')
    (folder / "job.json").write_text(job)
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == protocol.EXIT_BAD_JOB
    assert result["error_kind"] == "job" and "hexagonal" in result["error"]


@pytest.mark.parametrize("delegate", ["nnapi:qti-dsp", "hexagon"])  # gpu: CompiledModel (test_compiled.py)
def test_delegates_of_the_cpp_runtime_are_refused_by_the_python_runner(run_runner, board_runner,
                                                                      job_folder, tiny_tflite, delegate):
    folder = job_folder(tiny_tflite["fp32"])
    job = (folder / "job.json").read_text().replace('"xnnpack"', json.dumps(delegate))
    (folder / "job.json").write_text(job)
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == protocol.EXIT_RUNTIME
    kind = delegate.split(":")[0]
    assert result["error_kind"] == "delegate" and "benchmark_model" in result["error"]
    assert f"no {kind} delegate" in result["error"]


def test_missing_external_delegate_names_the_library(run_runner, board_runner, job_folder, tiny_tflite,
                                                     tmp_path):
    library = tmp_path / "no such dir" / "libqskew_missing_delegate.so"
    folder = job_folder(tiny_tflite["fp32"], delegate=f"external:{library},cache=1")
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == protocol.EXIT_RUNTIME
    assert result["error_kind"] == "delegate" and str(library) in result["error"]
    assert result["delegate_requested"].startswith("external:")


def test_samples_that_do_not_fit_the_model_are_an_input_error(run_runner, board_runner, job_folder,
                                                              tiny_tflite):
    wrong = np.zeros((5, 9, 9, 1), np.uint8)
    proc, result = run_runner(board_runner, job_folder(tiny_tflite["fp32"], inputs=wrong))
    assert proc.returncode == protocol.EXIT_BAD_JOB
    assert result["error_kind"] == "input" and "[9, 9, 1]" in result["error"]


def test_missing_job_folder_is_a_bad_job(run_runner, board_runner, tmp_path):
    proc, result = run_runner(board_runner, tmp_path / "nowhere")
    assert proc.returncode == protocol.EXIT_BAD_JOB and result is None
    assert protocol.parse_handshake(proc.stdout) is not None and "nowhere" in proc.stderr


def test_runs_as_a_module_from_a_checkout(run_runner, job_folder, tiny_tflite):
    ok_run(run_runner, None, job_folder(tiny_tflite["int8"], delegate="reference"), module=True)


@pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="no .venv-board (make board): Python 3.9 + "
                    "tflite-runtime 2.14 + numpy<2 plays an older board")
def test_older_board_runtime_gives_the_same_outputs(run_runner, board_runner, job_folder, tiny_tflite):
    _, here, expected = ok_run(run_runner, board_runner, job_folder(tiny_tflite["int8"], delegate="reference"))
    _, board, got = ok_run(run_runner, board_runner, job_folder(tiny_tflite["int8"], delegate="reference"),
                           python=str(BOARD_PYTHON))
    assert board["runtime"] == "tflite_runtime" and board["python"].startswith("3.9")
    assert board["numpy"].startswith("1.")
    assert np.array_equal(got, expected)  # reference kernels: bit-identical across runtimes
    _, fixed, _ = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fixed1"]), python=str(BOARD_PYTHON))
    assert fixed["delegate_applied"] == "xnnpack"
    if board["runtime_version"] == "2.14.0":  # this release does not delegate a dynamic batch dimension
        _, dyn, _ = ok_run(run_runner, board_runner, job_folder(tiny_tflite["fp32"]), python=str(BOARD_PYTHON))
        assert dyn["delegate_applied"] == "none" and dyn["execution_plan"]["delegated_nodes"] == 0


def test_a_named_runtime_is_used(run_runner, board_runner, job_folder, tiny_tflite):
    _, litert, expected = ok_run(run_runner, board_runner, job_folder(tiny_tflite["int8"], delegate="reference"))
    _, tf_lite, got = ok_run(run_runner, board_runner,
                             job_folder(tiny_tflite["int8"], delegate="reference", runtime="tensorflow"))
    assert tf_lite["runtime"] == "tensorflow" and tf_lite["runtime_version"].startswith("2.")
    assert np.array_equal(got, expected)


def test_a_runtime_the_device_lacks_is_named_in_the_error(run_runner, board_runner, job_folder, tiny_tflite):
    pytest.importorskip("ai_edge_litert")
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite_runtime is installed here")
    except ImportError:
        pass
    proc, result = run_runner(board_runner, job_folder(tiny_tflite["fp32"], runtime="tflite_runtime"))
    assert proc.returncode == protocol.EXIT_RUNTIME
    assert result["error_kind"] == "job" and "tflite_runtime" in result["error"]


def test_progress_lines_come_at_the_interval_the_job_asks(run_runner, board_runner, job_folder, tiny_tflite):
    proc, result = run_runner(board_runner, job_folder(tiny_tflite["fp32"], progress_interval_s=0.0))
    assert result["status"] == "ok"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(protocol.PROGRESS_PREFIX)]
    assert lines == [protocol.progress_line(done, 150) for done in (64, 128, 150)]
    assert protocol.parse_progress(proc.stdout) == (150, 150)
    quiet, _ = run_runner(board_runner, job_folder(tiny_tflite["fp32"]))  # default: at most once a second
    assert protocol.PROGRESS_PREFIX not in quiet.stdout


def test_parse_progress_takes_the_last_well_formed_line():
    assert protocol.parse_progress("QSKEW-PROGRESS 3 10\nnoise\nQSKEW-PROGRESS 7 10\nQSKEW-PROGRESS x 10") == (7, 10)
    assert protocol.parse_progress("QSKEW-RUNNER protocol=1.1") is None


def test_served_jobs_match_jobs_run_alone(run_runner, board_runner, job_folder, tiny_tflite, tmp_path):
    """run.py --serve takes job folders on stdin: the handshake first, then per job its handshake,
    its lines and QSKEW-DONE with the exit code run.py JOB_DIR gives; the same files, the same bits."""
    import shutil
    import sys

    from harness.targets.process import run_command

    folders = []
    for name in ("fp32", "int8", "fp32"):
        src = job_folder(tiny_tflite[name])
        folders.append(Path(shutil.copytree(src, tmp_path / f"served-{len(folders)}")))
    missing = tmp_path / "no-such-job"
    stdin = "".join(f"{f}\n" for f in folders + [missing]).encode()
    proc = run_command([sys.executable, str(board_runner), protocol.SERVE_FLAG], timeout_s=120, stdin_bytes=stdin)
    assert proc.returncode == protocol.EXIT_OK, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert protocol.parse_handshake(lines[0])["protocol"] == protocol.PROTOCOL_VERSION
    codes = [protocol.parse_done(s) for s in lines if protocol.parse_done(s) is not None]
    assert codes == [protocol.EXIT_OK] * 3 + [protocol.EXIT_BAD_JOB]
    assert sum(1 for s in lines if s.startswith(protocol.HANDSHAKE_PREFIX)) == 1 + 4
    for folder, name in zip(folders, ("fp32", "int8", "fp32")):
        alone = job_folder(tiny_tflite[name])
        ok_run(run_runner, board_runner, alone)
        assert (folder / "outputs.npy").read_bytes() == (alone / "outputs.npy").read_bytes()
        served, single = (json.loads((f / "result.json").read_text()) for f in (folder, alone))
        assert served["output"] == single["output"] and served["status"] == "ok"
