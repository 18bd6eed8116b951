"""farm.schedule: the plan the manifest records (what `qskew signoff` judges)."""

import dataclasses
from pathlib import Path

from harness import config
from harness.farm.inventory import load_inventory
from harness.farm.schedule import OpenDevice, planned_jobs
from harness.records import ModelArtifact

DEVICES = ('[[device]]\nname = "bench"\nreach = "local"\n'
           '[[device]]\nname = "phone"\nreach = "adb-tcp"\naddress = "10.0.0.2:5555"\ndelegates = ["xnnpack"]\n')


def test_the_plan_holds_every_job_including_an_unreachable_devices(tmp_path):
    (tmp_path / "devices.toml").write_text(DEVICES)
    exp = config.from_dict({"run": {"targets": ["bench", "phone"], "delegates": ["xnnpack", "gpu"],
                                    "devices_file": str(tmp_path / "devices.toml")}}, source="t")
    artifacts = [ModelArtifact("int8", Path("a.tflite"), "s", 1, (), (), {}),
                 dataclasses.replace(ModelArtifact("mixed", None, None, 0, (), (), {}), error="did not convert")]
    bench = OpenDevice(load_inventory(tmp_path / "devices.toml").get("bench"), None, {})
    plan = planned_jobs(exp, artifacts, [bench], unreachable=[("phone", RuntimeError("no route"))])
    assert plan == [["int8", "bench", "xnnpack"], ["int8", "bench", "gpu"], ["mixed", "bench", "xnnpack"],
                    ["mixed", "bench", "gpu"], ["int8", "phone", "xnnpack"], ["mixed", "phone", "xnnpack"]]
