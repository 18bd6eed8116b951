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


def test_a_pools_jobs_are_planned_once_under_the_pools_name(tmp_path):
    (tmp_path / "devices.toml").write_text(
        '[[device]]\nname = "s1"\nreach = "local"\npool = "sims"\n'
        '[[device]]\nname = "s2"\nreach = "local"\npool = "sims"\ndelegates = ["xnnpack"]\n'
        '[[device]]\nname = "s3"\nreach = "local"\npool = "sims"\n')
    exp = config.from_dict({"run": {"targets": ["sims"], "delegates": ["xnnpack", "reference"],
                                    "devices_file": str(tmp_path / "devices.toml")}}, source="t")
    inv = load_inventory(tmp_path / "devices.toml")
    opened = [OpenDevice(inv.get(n), None, {}) for n in ("s1", "s2")]
    art = [ModelArtifact("int8", Path("a.tflite"), "s", 1, (), (), {})]
    plan = planned_jobs(exp, art, opened, unreachable=[("s3", RuntimeError("offline"))])
    assert plan == [["int8", "sims", "xnnpack"], ["int8", "sims", "reference"]]


def test_pool_auto_groups_devices_reporting_the_same_model_abi_and_runtime():
    from harness.farm.inventory import DeviceSpec
    from harness.farm.schedule import auto_pool, groups_of

    phone = {"model": "Pixel 7", "abi": "arm64-v8a", "python_version": "3.11.2"}
    specs = [DeviceSpec(name=n, reach="adb-usb", serial=n, pool="auto") for n in ("u1", "u2", "u3")]
    props = [phone, dict(phone), {**phone, "model": "Pixel 8"}]
    opened = [OpenDevice(auto_pool(s, p), None, p) for s, p in zip(specs, props)]
    groups = groups_of(opened)
    assert [[d.spec.name for d in members] for members in groups.values()] == [["u1", "u2"], ["u3"]]
    assert list(groups)[0] == "auto-Pixel_7-arm64-v8a-python-py3.11.2"
    labelled = DeviceSpec(name="x", reach="local", pool="bench")
    assert auto_pool(labelled, phone) is labelled
