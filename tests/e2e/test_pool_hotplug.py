"""Hot-plug through Debian's real adb server: a pool member vanishes, a new device joins mid-run.

Two simulated devices are ``adb connect``ed to a private adb server and form one pool
(``reach = "adb-server"``). When the first job starts, member B is stopped (the server drops it
from its ``track-devices`` list) and a third simulated device, C, is started and connected. B must
be drained at once, C must join the pool and run jobs, and every job must finish.
"""

import json
import os
import sys
import threading
import time

import pytest

from harness import config, datasets, rundir
from harness.evaluate import ModelSource, evaluate
from harness.farm.progress import FARM_FILE
from harness.runners import python as py_runner
from harness.targets.adb_track import TRACK_POLL_S
from harness.targets.simulate.simulator import SimulatedDevice
from support.adb_sim import ADB_BINARY, RealAdb, trusted_keys_file

VARIANTS = ["fp32", "int8", "float16"]
DELEGATES = ["xnnpack", "reference"]
SLOW_JOB_S = 1.0  # member A's jobs wait this long first, so that C joins while jobs remain


@pytest.fixture(scope="module")
def small_cnn():
    from models.train import train_or_load

    return train_or_load("small_cnn", datasets.load("digits-groups"), seed=0, progress=False).model


def _device(tmp_path, name):
    root = tmp_path / "root"  # one folder for all three: the newcomer finds what the pool pushed
    root.mkdir(exist_ok=True)
    return SimulatedDevice(root, python=sys.executable, trusted_keys=trusted_keys_file(tmp_path / "trusted"),
                           serial=f"qskew-sim-{name}").start()


@pytest.mark.slow
def test_a_vanishing_member_is_drained_and_a_new_device_joins_the_pool(tmp_path, small_cnn, monkeypatch):
    if not os.path.exists(ADB_BINARY):
        pytest.skip(f"Debian's adb is not installed ({ADB_BINARY}); apt-get install adb")
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    adb = RealAdb(tmp_path / "adb-home")
    a, b = _device(tmp_path, "a"), _device(tmp_path, "b")
    started = []
    try:
        serials = {"a": adb.connect(a.address), "b": adb.connect(b.address)}
        server = f"127.0.0.1:{adb.server_port}"
        # a newcomer takes its pool's inventory entry, workdir included, as a phone would: a device
        # path, the same in every (confined) simulated device
        workdir = "/data/local/tmp/qskew"
        devices = tmp_path / "devices.toml"
        devices.write_text("".join(
            f'[[device]]\nname = "lab-{x}"\nreach = "adb-server"\nserial = "{serials[x]}"\nserver = "{server}"\n'
            f'pool = "lab"\nworkdir = "{workdir}"\n' for x in "ab"))
        real_run_job = py_runner.run_job

        def swap():  # B leaves, C arrives
            b.stop()
            c = _device(tmp_path, "c")
            started.append(c)
            serials["c"] = adb.connect(c.address)

        def watched(target, artifact, *args, **kwargs):
            if not started:
                started.append(None)
                threading.Thread(target=swap, daemon=True).start()
            if target.name == "lab-a":
                time.sleep(SLOW_JOB_S)
            return real_run_job(target, artifact, *args, **kwargs)

        monkeypatch.setattr(py_runner, "run_job", watched)
        exp = config.from_dict({"quantize": {"variants": VARIANTS},
                                "run": {"targets": ["lab"], "devices_file": str(devices), "delegates": DELEGATES}},
                               source="test")
        out, lines = tmp_path / "run", []
        evaluate(exp, datasets.load("digits-groups"), ModelSource(small_cnn, {"source": "test", "sha256": "x"}),
                 out, progress=False, echo=lines.append)
    finally:
        adb.kill_server()
        for dev in [a, b] + [d for d in started if d is not None]:
            dev.stop()

    run = rundir.read_run(out)
    assert sorted(run.jobs()) == sorted((v, "lab", d) for v in VARIANTS for d in DELEGATES)
    farm = json.loads((out / FARM_FILE).read_text())
    assert "disappeared from the adb server" in farm["drained"]["lab-b"]
    newcomer = f"lab+{serials['c']}"
    assert any(line.startswith(f"hot-plug: {serials['c']}") and "joined pool lab" in line for line in lines)
    ran_on = [r["device"]["name"] for r in run.summary["runs"]]
    assert newcomer in ran_on and farm["devices"][newcomer]["jobs_ok"] == ran_on.count(newcomer)


@pytest.mark.slow
def test_a_lone_device_leaving_the_server_stops_with_an_error_naming_it(tmp_path, small_cnn, monkeypatch):
    from harness.errors import TargetError

    if not os.path.exists(ADB_BINARY):
        pytest.skip(f"Debian's adb is not installed ({ADB_BINARY}); apt-get install adb")
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    adb = RealAdb(tmp_path / "adb-home")
    device = _device(tmp_path, "lone")
    try:
        serial = adb.connect(device.address)
        devices = tmp_path / "devices.toml"
        devices.write_text(f'[[device]]\nname = "lone"\nreach = "adb-server"\nserial = "{serial}"\n'
                           f'server = "127.0.0.1:{adb.server_port}"\nworkdir = "/data/local/tmp/qskew"\n')
        real_run_job, calls = py_runner.run_job, []

        def watched(target, artifact, *args, **kwargs):
            calls.append(artifact.variant)
            result = real_run_job(target, artifact, *args, **kwargs)
            if len(calls) == 1:  # gone between the first and the second job
                device.stop()
                deadline = time.monotonic() + 15
                while f"{serial}\tdevice" in adb("devices").stdout and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(2 * TRACK_POLL_S)  # the server's list reaches qskew
            return result

        monkeypatch.setattr(py_runner, "run_job", watched)
        exp = config.from_dict({"quantize": {"variants": ["fp32", "int8"]},
                                "run": {"targets": ["lone"], "devices_file": str(devices)}}, source="test")
        out, lines = tmp_path / "run", []
        with pytest.raises(TargetError) as info:
            evaluate(exp, datasets.load("digits-groups"), ModelSource(small_cnn, {"source": "test", "sha256": "x"}),
                     out, progress=False, echo=lines.append)
    finally:
        adb.kill_server()
        device.stop()
    assert info.value.device == "lone" and "disappeared from the adb server" in str(info.value)
    assert rundir.read_run(out).jobs() == [("fp32", "lone", "xnnpack")] and calls == ["fp32"]
