"""The whole pipeline over real ADB: a simulated device on loopback, the adb-shell client, the runner.

Logits from the simulated device must be bit-identical to the local target's with the same runtime
and delegate (the transport must not change a byte), and an "older board" (Python 3.9 +
tflite-runtime 2.14 + numpy<2, legacy shell without exit codes, 4 KiB packets) must complete the
same sweep and say which runtime it used.
"""

import json
import shutil

import numpy as np
import pytest

from harness import cli, rundir
from support.boards import BOARD_PYTHON, needs_board

VARIANTS = "fp32,int8,int16x8"


def _logits(run, variant, target, delegate):
    p = run.predictions
    rows = p[(p.variant == variant) & (p.target == target) & (p.delegate == delegate)].sort_values("id")
    return np.stack(rows.logits.to_numpy())


@pytest.fixture(scope="module")
def adb_run(tmp_path_factory):
    from harness.farm.connect import simulated_root

    # a device that has never seen the test set (other tests may have pushed it to "simulated"
    # already, and a content-addressed push of a file the device has moves nothing)
    shutil.rmtree(simulated_root("simulated"), ignore_errors=True)
    out = tmp_path_factory.mktemp("adb") / "run"
    code = cli.main(["demo", "--device", "simulated", "--device", "local", "--variants", VARIANTS,
                     "--delegates", "xnnpack,reference", "--out", str(out), "--no-progress"])
    assert code == 0
    return rundir.read_run(out)


def test_simulated_device_gives_the_same_logits_as_local(adb_run):
    jobs = adb_run.jobs()
    for variant in VARIANTS.split(","):
        for delegate in ("xnnpack", "reference"):
            assert (variant, "simulated", delegate) in jobs
            assert np.array_equal(_logits(adb_run, variant, "simulated", delegate),
                                  _logits(adb_run, variant, "local", delegate)), (variant, delegate)


def test_the_run_directory_records_the_device_and_what_moved(adb_run):
    props = adb_run.manifest["targets"]["simulated"]
    assert props["inventory"]["reach"] == "simulated" and props.get("model") == "qskew simulated device"
    runs = [r for r in adb_run.summary["runs"] if r["target"] == "simulated"]
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs)
    pushed = {kind: sum(r["transfer"]["pushed"].get(kind, 0) for r in runs) for kind in ("inputs", "model")}
    inputs_bytes = max(r["transfer"]["pushed"].get("inputs", 0) for r in runs)
    assert inputs_bytes > 0 and pushed["inputs"] == inputs_bytes  # the test set went over once
    assert all(r["transfer"]["bytes_pulled"] > 0 for r in runs)


@needs_board
def test_an_older_board_over_legacy_adb_completes_with_its_own_runtime(tmp_path):
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[device]]\nname = "old-board"\nreach = "simulated"\npython = "{BOARD_PYTHON}"\n'
                       'features = []\nmax_payload = 4096\n')
    out = tmp_path / "run"
    assert cli.main(["demo", "--devices", str(devices), "--device", "old-board", "--variants", "fp32,int8",
                     "--out", str(out), "--no-progress"]) == 0
    runs = [r for r in rundir.read_run(out).summary["runs"] if r["target"] == "old-board"]
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert {(r["runtime"], r["runtime_version"]) for r in runs} == {("tflite_runtime", "2.14.0")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["targets"]["old-board"]["python_version"].startswith("3.9")
