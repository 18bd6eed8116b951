"""check_device: what each device really offers, found by running a probe job on it.
(The `qskew devices check` command is tested in tests/harness/commands/test_devices.py.)"""

import sys

import pytest

from harness.farm.inventory import DeviceSpec
from harness.farm.probe import check_device, probe_artifact
from support.boards import BOARD_PYTHON, needs_board


@pytest.fixture(scope="module")
def probe():
    return probe_artifact()


def test_local_device_loads_every_default_delegate(tmp_path, probe):
    check = check_device(DeviceSpec("here", "local", python=sys.executable, workdir=str(tmp_path / "dev")), probe)
    assert check.reachable and not check.error
    assert check.delegates == {"xnnpack": "ok", "reference": "ok", "builtin": "ok"}
    assert check.runtime.startswith("ai_edge_litert ") and check.free_bytes > 0


@needs_board
def test_older_board_reports_its_own_runtime(tmp_path, probe):
    spec = DeviceSpec("board", "local", python=str(BOARD_PYTHON), workdir=str(tmp_path / "board"),
                      delegates=("xnnpack", "reference"))
    check = check_device(spec, probe)
    assert check.runtime == "tflite_runtime 2.14.0" and check.properties["python_version"].startswith("3.9")
    assert check.delegates == {"xnnpack": "ok", "reference": "ok"}


def test_a_delegate_that_cannot_load_is_a_row_not_a_crash(tmp_path, probe):
    spec = DeviceSpec("here", "local", python=sys.executable, workdir=str(tmp_path / "dev"),
                      delegates=("external:/nonexistent/libedgetpu.so.1", "reference"))
    check = check_device(spec, probe)
    assert check.delegates["reference"] == "ok"
    assert check.delegates["external:/nonexistent/libedgetpu.so.1"].startswith("fails: delegate")


def test_a_simulated_device_is_checked_over_adb(probe):
    check = check_device(DeviceSpec("sim-check", "simulated", python=sys.executable, workdir=""), probe)
    assert check.reachable and not check.error, check.error
    assert check.properties["model"] == "qskew simulated device" and check.properties["abi"]
    assert check.delegates == {"xnnpack": "ok", "reference": "ok", "builtin": "ok"}


def test_a_phone_that_does_not_answer_is_unreachable_and_named(probe):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = check_device(DeviceSpec("pixel-off", "adb-tcp", address=f"127.0.0.1:{port}"), probe)
    assert not check.reachable and "pixel-off" in check.error and str(port) in check.error


def test_an_edgetpu_delegate_is_probed_with_a_full_integer_batch_one_model(tmp_path, probe):
    spec = DeviceSpec("coral", "local", python=sys.executable, workdir=str(tmp_path / "coral"),
                      delegates=("edgetpu", "reference"))
    check = check_device(spec, probe)
    assert check.delegates["reference"] == "ok"
    # no libedgetpu on this machine: the delegate fails to load, and the row says which library
    assert check.delegates["edgetpu"].startswith("fails: delegate:")
    assert "libedgetpu.so.1" in check.delegates["edgetpu"] and "coral" in check.delegates["edgetpu"]
    small = probe_artifact(full_integer=True)
    assert small.inputs[0].dtype == "int8" and small.inputs[0].shape_signature == (1, 4)


def test_a_board_reports_no_gpu_without_a_gpu_probe_job():
    """qemu-user has no GPU: the check says so instead of spending a job (~20 s under qemu) on it."""
    from harness.farm import probe as probe_module

    class Untouched:  # the target must not be used at all
        def __getattr__(self, name):
            raise AssertionError(f"the board's target was asked for {name}")

    gpu = probe_module._gpu(DeviceSpec("b", "board", board="aarch64"), Untouched(), [])
    assert gpu == probe_module.BOARD_GPU and gpu["adapter"] == "none"
