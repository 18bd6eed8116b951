"""Fixtures for the simulated ADB device tests: a device factory, RSA keys, Debian's adb."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from harness.targets.simulate.simulator import SimulatedDevice  # noqa: E402
from support.adb_sim import ADB_BINARY, RealAdb, trusted_keys_file  # noqa: E402


@pytest.fixture
def device_root(tmp_path) -> Path:
    root = tmp_path / "device"
    root.mkdir()
    return root


@pytest.fixture
def make_device(device_root, tmp_path):
    """Start simulated devices (root: ``device_root`` unless given; trusting the session test key
    unless ``trusted_keys`` is given); all are stopped at teardown."""
    started = []

    def make(**kwargs) -> SimulatedDevice:
        kwargs.setdefault("root", device_root)
        kwargs.setdefault("trusted_keys", trusted_keys_file(tmp_path / "trusted"))
        device = SimulatedDevice(**kwargs).start()
        started.append(device)
        return device

    yield make
    for device in started:
        device.stop()


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory) -> Path:
    """An adbkey/adbkey.pub pair made by adb-shell's keygen (slow-ish: one per session)."""
    from adb_shell.auth.keygen import keygen

    path = tmp_path_factory.mktemp("keys") / "adbkey"
    keygen(str(path))
    return path


@pytest.fixture(scope="session")
def other_rsa_key(tmp_path_factory) -> Path:
    from adb_shell.auth.keygen import keygen

    path = tmp_path_factory.mktemp("other-keys") / "adbkey"
    keygen(str(path))
    return path


@pytest.fixture
def real_adb(tmp_path):
    """Debian's adb on a private server port with a temporary HOME; the server is killed after."""
    if not os.path.exists(ADB_BINARY):
        pytest.skip(f"Debian's adb is not installed ({ADB_BINARY}); apt-get install adb")
    adb = RealAdb(tmp_path / "adb-home")
    yield adb
    adb.kill_server()
