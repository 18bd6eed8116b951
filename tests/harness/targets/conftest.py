"""Fixtures for the target tests: simulated ADB devices (real wire protocol) and a private HOME.

``adb_home`` points HOME and XDG_CONFIG_HOME at temp folders, so no test reads or writes the real
``~/.android/adbkey`` or qskew's own key. ``simulated`` starts devices with any SimulatedDevice
options and stops them at teardown; ``adb_target(sim)`` is an AdbTarget on one of them whose
workdir is the harness's folder inside the device's sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def adb_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


@pytest.fixture
def simulated(tmp_path, adb_home) -> Callable:
    """``simulated(**options)`` -> a started SimulatedDevice with its own sandbox root, trusting the
    session test key unless ``trusted_keys`` is given."""
    from harness.targets.simulate.simulator import SimulatedDevice
    from support.adb_sim import trusted_keys_file

    devices = []

    def start(**options):
        root = tmp_path / f"device{len(devices)}"
        root.mkdir()
        options.setdefault("trusted_keys", trusted_keys_file(tmp_path / "trusted"))
        device = SimulatedDevice(root, **options).start()
        devices.append(device)
        return device

    yield start
    for device in devices:
        device.stop()


@pytest.fixture
def adb_target(adb_home) -> Callable:
    """``adb_target(sim, **options)`` -> an AdbTarget on ``sim`` signing with the session test key
    (which ``simulated`` devices trust) unless ``key_path`` is given; closed at teardown."""
    from harness.targets.adb import AdbTarget
    from support.adb_sim import session_key

    targets = []

    def make(sim, name: str = "sim-1", **options):
        host, port = sim.address
        options.setdefault("workdir", "/data/local/tmp/qskew")  # a device path (the device is confined)
        options.setdefault("key_path", session_key())
        target = AdbTarget(name, address=f"{host}:{port}", **options)
        targets.append(target)
        return target

    yield make
    for target in targets:
        target.close()
