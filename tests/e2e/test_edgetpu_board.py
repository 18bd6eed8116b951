"""An Edge TPU board played by the simulated ADB device (no Edge TPU, no libedgetpu, no compiler
here): the shipped examples/edgetpu.toml refuses 16-bit variants before pushing, names what the
TPU job lacks, and still runs the fixed-batch int8 on the board's CPU."""

from pathlib import Path

from harness import cli, rundir
from harness.farm.connect import simulated_root

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "edgetpu.toml"


def test_the_edgetpu_example_on_a_simulated_coral(tmp_path):
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "coral-sim"\nreach = "simulated"\nprofile = "edgetpu"\n'
                       'labels = { accelerator = "edgetpu" }\n')
    out = tmp_path / "run"
    assert cli.main(["run", str(EXAMPLE), "--devices", str(devices), "--out", str(out), "--no-progress"]) == 0
    runs = {(r["variant"], r["delegate"]): r for r in rundir.read_run(out).summary["runs"]}
    for variant in ("int16x8", "mixed"):
        for delegate in ("edgetpu", "reference"):
            entry = runs[(variant, delegate)]
            assert entry["stage"] == "profile" and "8-bit integer models only" in entry["error"]
    tpu = runs[("int8", "edgetpu")]
    assert tpu["stage"] == "prepare" and "edgetpu_compiler is not on the PATH" in tpu["error"]
    cpu = runs[("int8", "reference")]
    assert cpu["status"] == "ok" and cpu["batch_size"] == 1 and cpu["repeat"]["runs"] == 3
    # only the int8 model reached the board: refused variants were never pushed
    models = list((simulated_root("coral-sim")).rglob("cache/*.tflite"))
    assert [m.stem for m in models] == [cpu["artifact_sha256"]]
