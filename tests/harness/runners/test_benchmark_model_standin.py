"""device_runner/benchmark_model_standin.py: the stand-in for TFLite's benchmark_model binary, run as
a process on the real runtime, against the binary's flag contract."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from device_runner import benchmark_model_standin as standin
from harness.runners.benchmark_model import STANDIN_FILE
from harness.targets.process import run_command
from support.boards import BOARD_PYTHON, needs_board

TIMEOUT_S = 60.0
SINGLE_RUN = ["--num_runs=1", "--min_secs=0", "--warmup_runs=1", "--warmup_min_secs=0"]


def run_standin(*flags, python=sys.executable, cwd=None):
    return run_command([str(python), str(STANDIN_FILE), *map(str, flags)], timeout_s=TIMEOUT_S, cwd=cwd)


def io_of(model: Path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    return interp, interp.get_input_details()[0], interp.get_output_details()


def int8_batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(n, 8, 8, 1)).astype(np.int8)


def test_it_says_it_is_the_stand_in():
    proc = run_standin("--help")
    assert proc.returncode == 0
    first = proc.stdout.splitlines()[0]
    assert first.startswith("INFO: qskew benchmark_model stand-in (not TFLite's binary)")
    assert "it is not TFLite's binary" in proc.stdout and "--input_layer_value_files" in proc.stdout


def test_outputs_are_every_output_tensor_concatenated_without_header(two_output_model, tmp_path):
    interp, tin, outs = io_of(two_output_model)
    x = int8_batch(5)
    (tmp_path / "in.raw").write_bytes(x.tobytes())
    name = tin["name"].replace(":", "::")
    proc = run_standin(f"--graph={two_output_model}", f"--input_layer={tin['name']}",
                       "--input_layer_shape=5,8,8,1", f"--input_layer_value_files={name}:in.raw",
                       f"--output_filepath={tmp_path / 'out.bin'}", *SINGLE_RUN, "--num_threads=2",
                       "--use_xnnpack=false", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    interp.resize_tensor_input(tin["index"], [5, 8, 8, 1])
    interp.allocate_tensors()
    interp.set_tensor(tin["index"], x)
    interp.invoke()
    expected = b"".join(interp.get_tensor(o["index"]).tobytes() for o in outs)
    assert len(outs) == 2 and (tmp_path / "out.bin").read_bytes() == expected
    assert "Input shapes: [5,8,8,1]" in proc.stdout
    assert "Inference timings in us: Init: " in proc.stdout
    assert "delegate" not in proc.stdout.split("Loaded model")[1].split("Initialized")[0]  # none applied


def test_a_value_file_of_the_wrong_size_is_fatal_like_the_binary(models, tmp_path):
    _, tin, _ = io_of(models["int8"])
    (tmp_path / "in.raw").write_bytes(int8_batch(3).tobytes())  # 3 samples for a tensor of 4
    out = tmp_path / "out.bin"
    proc = run_standin(f"--graph={models['int8']}", f"--input_layer={tin['name']}", "--input_layer_shape=4,8,8,1",
                       f"--input_layer_value_files={tin['name'].replace(':', '::')}:in.raw",
                       f"--output_filepath={out}", *SINGLE_RUN, cwd=str(tmp_path))
    assert proc.returncode == standin.EXIT_FATAL == 134
    assert "FATAL: The size of in.raw is 192 bytes. It should be 256 bytes." in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("flag, warning", [
    ("--use_gpu=true", "WARN: GPU acceleration is unsupported on this platform."),
    ("--use_nnapi=true", "WARN: NNAPI acceleration is unsupported on this platform."),
    ("--use_hexagon=true", "WARN: Could not create Hexagon delegate: platform may not support "
                           "delegate or required libraries are missing")])
def test_an_unavailable_delegate_falls_back_to_the_cpu_silently_as_the_binary_does(models, flag, warning):
    proc = run_standin(f"--graph={models['fp32']}", *SINGLE_RUN, flag, "--use_xnnpack=false")
    assert proc.returncode == 0, proc.stderr
    assert warning in proc.stdout.splitlines()
    assert "Explicitly applied" not in proc.stdout and "Inference timings in us" in proc.stdout


def test_xnnpack_is_logged_in_the_registrars_words(models):
    proc = run_standin(f"--graph={models['fixed4']}", *SINGLE_RUN, "--use_xnnpack=true", "--num_threads=1")
    assert proc.returncode == 0, proc.stderr
    assert ("INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed "
            "by the delegate.") in proc.stdout.splitlines()
    proc = run_standin(f"--graph={models['int16x8']}", *SINGLE_RUN, "--use_xnnpack=true")
    assert ("INFO: Though XNNPACK delegate is explicitly applied, the model graph will not be executed "
            "by the delegate.") in proc.stdout.splitlines()


def test_a_missing_external_delegate_falls_back_to_the_cpu_like_the_binary(models):
    # the real binary: an INFO line, the null delegate skipped, the graph on the CPU, exit 0
    proc = run_standin(f"--graph={models['fp32']}", *SINGLE_RUN, "--use_xnnpack=false",
                       "--external_delegate_path=/nonexistent/libx.so",
                       "--external_delegate_options=a:b;c:d", "--no_such_flag=1")
    assert proc.returncode == standin.EXIT_OK, proc.stderr
    assert "WARN: Unconsumed cmdline flags: --no_such_flag=1" in proc.stdout
    assert "INFO: Unable to load external delegate from : /nonexistent/libx.so" in proc.stdout.splitlines()
    assert "EXTERNAL delegate" not in proc.stdout and "Inference timings in us" in proc.stdout
    assert standin.external_options("a:b;c:d;broken;e:f:g") == {"a": "b", "c": "d"}


def test_bad_flags_fail_before_loading_anything(tmp_path):
    assert "--graph" in run_standin(*SINGLE_RUN).stderr
    proc = run_standin("--graph=m.tflite", "--input_layer=a,b", "--input_layer_shape=1,2")
    assert proc.returncode == 1 and "must match the number of items in --input_layer" in proc.stderr
    proc = run_standin("--graph=m.tflite", "--input_layer=a", "--input_layer_shape=-1,2")
    assert proc.returncode == 1 and "(-1's)" in proc.stderr
    proc = run_standin("--graph=m.tflite", "--use_xnnpack=maybe")
    assert proc.returncode == 1 and "Failed to parse bool flag --use_xnnpack=maybe" in proc.stderr


def test_name_and_file_split_like_the_binary():
    assert standin.split_name_and_file("serving_default_x::0:data/in.raw") == ("serving_default_x:0", "data/in.raw")
    assert standin.split_name_and_file("in:a::b") == ("in", "a:b")
    with pytest.raises(ValueError, match="more than one delimiter"):
        standin.split_name_and_file("a:b:c")
    with pytest.raises(ValueError, match="any delimiter"):
        standin.split_name_and_file("a::b")


@needs_board
def test_it_runs_on_an_older_board_with_tflite_runtime(models, tmp_path):
    _, tin, outs = io_of(models["int8"])
    (tmp_path / "in.raw").write_bytes(int8_batch(2).tobytes())
    proc = run_standin(f"--graph={models['int8']}", f"--input_layer={tin['name']}", "--input_layer_shape=2,8,8,1",
                       f"--input_layer_value_files={tin['name'].replace(':', '::')}:in.raw",
                       "--output_filepath=out.bin", *SINGLE_RUN, "--use_xnnpack=false",
                       python=BOARD_PYTHON, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stand-in (not TFLite's binary): runtime tflite_runtime 2.14.0" in proc.stdout
    assert (tmp_path / "out.bin").stat().st_size == 2 * 10  # int8 [2, 10]
