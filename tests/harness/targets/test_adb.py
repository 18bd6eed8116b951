"""harness/targets/adb.py: AdbTarget, the Target of an ADB device, against the simulated device."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.targets.adb import AdbTarget


def test_bad_addresses_are_config_errors():
    for bad in ("nohost", "host:", "host:abc", ":5555", "h:99999"):
        with pytest.raises(ConfigError, match="host:port"):
            AdbTarget("p", address=bad)
    with pytest.raises(ConfigError, match="exactly one"):
        AdbTarget("p")
    with pytest.raises(ConfigError, match="exactly one"):
        AdbTarget("p", address="h:1", serial="X")


def test_properties_come_from_getprop_and_the_devices_python(simulated, adb_target):
    sim = simulated(serial="SER123", model="Pixel Sim")
    props = adb_target(sim).properties()
    assert props["name"] == "sim-1" and props["kind"] == "adb" and props["transport"] == "tcp"
    assert props["model"] == "Pixel Sim" and props["serialno"] == "SER123"
    assert props["abi"] == sim.abi and props["sdk"] and props["os_release"]
    assert props["python_version"].count(".") == 2 and "shell_v2" in props["features"]
    broken = adb_target(sim, name="no-python", python="no-such-python").properties()
    assert broken["python_version"] is None and broken["python_error"]
