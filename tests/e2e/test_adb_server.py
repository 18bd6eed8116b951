"""Devices through Debian's real adb server (``reach = "adb-server"``, adbutils).

A simulated device (its own serial, trusting the session key) is ``adb connect``ed to a private adb
server (private HOME and port, never 5037, killed at the end). ``qskew devices list --server`` must
list it with its properties and write an inventory of it; a demo over that inventory must give
predictions bit-identical to the direct ``simulated`` connection. A device that does not trust the
server's key is listed as unauthorized, with what to do.
"""

import json
import os
import sys

import numpy as np
import pytest

from harness import cli, rundir
from harness.farm.inventory import load_inventory
from harness.targets.simulate.simulator import SimulatedDevice
from support.adb_sim import ADB_BINARY, RealAdb, trusted_keys_file, wait_until

SERIAL = "qskew-sim-srv"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(adb, server "host:port", serial the server lists, device root): one device behind a real server."""
    if not os.path.exists(ADB_BINARY):
        pytest.skip(f"Debian's adb is not installed ({ADB_BINARY}); apt-get install adb")
    tmp = tmp_path_factory.mktemp("adb-server")
    root = tmp / "device"
    root.mkdir()
    adb = RealAdb(tmp / "adb-home")
    device = SimulatedDevice(root, python=sys.executable, trusted_keys=trusted_keys_file(tmp / "trusted"),
                             serial=SERIAL).start()
    try:
        serial = adb.connect(device.address)
        yield adb, f"127.0.0.1:{adb.server_port}", serial, root
    finally:
        adb.kill_server()
        device.stop()


def test_devices_list_shows_the_device_and_writes_an_inventory(served, tmp_path, capfd):
    _adb, server, serial, _root = served
    inventory = tmp_path / "devices.toml"
    assert cli.main(["devices", "list", "--server", server, "--json", "--write", str(inventory)]) == 0
    listing = json.loads(capfd.readouterr().out)
    assert listing["server"] == server and listing["leases"] == []
    [dev] = listing["devices"]
    assert (dev["serial"], dev["state"], dev["advice"], dev["error"]) == (serial, "device", "", "")
    props = dev["properties"]
    assert props["model"] == "qskew simulated device" and props["serialno"] == SERIAL
    assert props["transport"] == "adb-server" and "shell_v2" in props["features"]
    [spec] = [d for d in load_inventory(inventory).devices if d.reach == "adb-server"]
    assert (spec.serial, spec.server, spec.labels["model"]) == (serial, server, "qskew simulated device")
    assert cli.main(["devices", "list", "--server", server]) == 0
    table = capfd.readouterr().out
    assert serial in table and "qskew simulated device" in table


def test_an_unauthorized_device_is_listed_with_what_to_do(served, tmp_path, capfd):
    adb, server, _serial, _root = served
    stranger_keys = tmp_path / "adb_keys"
    stranger_keys.write_text("")  # trusts nobody: the server's key is refused
    (tmp_path / "device").mkdir()
    with SimulatedDevice(tmp_path / "device", trusted_keys=stranger_keys, serial="stranger") as device:
        address = f"{device.address[0]}:{device.address[1]}"
        adb("connect", address)
        wait_until(lambda: f"{address}\tunauthorized" in adb("devices").stdout, "the device shows unauthorized")
        assert cli.main(["devices", "list", "--server", server, "--json"]) == 1
        listing = json.loads(capfd.readouterr().out)
        adb("disconnect", address)
    [dev] = [d for d in listing["devices"] if d["serial"] == address]
    assert dev["state"] == "unauthorized" and "Allow USB debugging" in dev["advice"]
    assert dev["properties"] == {}


def test_no_server_is_an_error_naming_the_port(capfd):
    from support.adb_sim import free_port

    port = free_port()
    assert cli.main(["devices", "list", "--server", f"127.0.0.1:{port}"]) != 0
    err = capfd.readouterr().err
    assert f"no adb server answers at 127.0.0.1:{port}" in err and "start-server" in err


def _logits(run, variant, target, delegate):
    p = run.predictions
    rows = p[(p.variant == variant) & (p.target == target) & (p.delegate == delegate)].sort_values("id")
    return np.stack(rows.logits.to_numpy()), rows.id.to_numpy()


@pytest.mark.slow
def test_a_demo_through_the_server_is_bit_identical_to_the_direct_connection(served, tmp_path):
    _adb, server, serial, root = served
    devices = tmp_path / "devices.toml"
    devices.write_text(f'[[device]]\nname = "via-server"\nreach = "adb-server"\nserial = "{serial}"\n'
                       f'server = "{server}"\nworkdir = "/data/local/tmp/qskew"\n')
    out = tmp_path / "run"
    assert cli.main(["demo", "--devices", str(devices), "--device", "via-server", "--device", "simulated",
                     "--variants", "fp32,int8", "--delegates", "xnnpack,reference", "--out", str(out),
                     "--no-progress"]) == 0
    run = rundir.read_run(out)
    for variant in ("fp32", "int8"):
        for delegate in ("xnnpack", "reference"):
            got, got_ids = _logits(run, variant, "via-server", delegate)
            want, want_ids = _logits(run, variant, "simulated", delegate)
            assert len(got_ids) > 0 and np.array_equal(got_ids, want_ids)
            assert np.array_equal(got, want), (variant, delegate)
    props = run.manifest["targets"]["via-server"]
    assert props["transport"] == "adb-server" and props["serialno"] == SERIAL
    # both devices ran every job on one runner kept up per session (no detached per-job runner)
    assert not list(root.glob("data/local/tmp/qskew/jobs/*/.qskew-job.stdout"))


def test_the_runner_stays_up_through_the_server(served, tmp_path, monkeypatch):
    """A ServerTarget keeps one runner up on a shell-v2 stream through the server; jobs get the
    bits of a runner per job, and one killed on the device is replaced."""
    import hashlib

    import harness.runners.python as python_runner
    from harness.records import ModelArtifact
    from harness.runners.python import run_job
    from harness.targets.adb_server import ServerTarget
    from support import tiny_models as tiny

    _adb, server, serial, root = served
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    models = tiny.build_models(tmp_path / "models")
    test = tiny.make_test_set(150)
    arts = [ModelArtifact(variant=v, path=models[v], sha256=hashlib.sha256(models[v].read_bytes()).hexdigest(),
                          size_bytes=models[v].stat().st_size, inputs=(), outputs=(), recipe={}) for v in ("fp32", "int8")]
    workdir = "/data/local/tmp/qskew-stream"  # the device's own path (root/data/local/tmp on this host)
    with ServerTarget("via-server", serial=serial, server=server, workdir=workdir) as target:
        served_runs = [run_job(target, art, test) for art in arts]
        (first,) = target._served.values()
        target.run(["kill", "-9", str(first.pid)], timeout_s=30)
        again = run_job(target, arts[0], test)
        (second,) = target._served.values()
    assert second is not first and again.ok and again.raw.tobytes() == served_runs[0].raw.tobytes()
    assert not list((root / "data/local/tmp/qskew-stream").glob("jobs/*/.qskew-job.stdout"))
    monkeypatch.setattr(python_runner, "SERVED_RUNNER", False)
    with ServerTarget("via-server", serial=serial, server=server, workdir=workdir + "-per-job") as target:
        alone = [run_job(target, art, test) for art in arts]
    for a, b in zip(served_runs, alone):
        assert a.ok and b.ok and a.raw.dtype == b.raw.dtype and a.raw.tobytes() == b.raw.tobytes()


def test_a_commands_output_through_the_server_stops_at_the_output_cap(served):
    from harness.targets.adb_link import LinkLimits, PeerError
    from harness.targets.adb_server import ServerTarget

    _adb, server, serial, root = served
    target = ServerTarget("capped", serial=serial, server=server, workdir=str(root / "data/local/tmp/qskew"),
                          limits=LinkLimits(output_bytes=4096))
    try:
        ok = target.run(["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3"], timeout_s=30)
        assert (ok.returncode, ok.stdout, ok.stderr.strip()) == (3, "x" * 3000, "oops")
        with pytest.raises(PeerError, match="exceeds the 4096-byte limit"):
            target.run(["sh", "-c", "head -c 100000 /dev/zero"], timeout_s=30)
        assert target.run(["echo", "still here"], timeout_s=30).stdout.strip() == "still here"
    finally:
        target.close()


def test_a_legacy_devices_output_through_the_server_stops_at_the_output_cap_too(served, tmp_path):
    from harness.targets.adb_link import LinkLimits, PeerError
    from harness.targets.adb_server import ServerTarget

    adb, server, _serial, _root = served
    (tmp_path / "legacy").mkdir()
    with SimulatedDevice(tmp_path / "legacy", trusted_keys=trusted_keys_file(tmp_path / "trusted"), features=(),
                         serial="legacy") as device:  # no shell v2: qskew's exit marker on shell v1
        serial = adb.connect(device.address)
        target = ServerTarget("legacy", serial=serial, server=server, workdir=str(tmp_path / "legacy/data"),
                              limits=LinkLimits(output_bytes=4096))
        try:
            assert "shell_v2" not in target.properties()["features"]
            ok = target.run(["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; exit 4"], timeout_s=30)
            assert (ok.returncode, ok.stdout) == (4, "x" * 3000)
            with pytest.raises(PeerError, match="exceeds the 4096-byte limit"):
                target.run(["sh", "-c", "head -c 100000 /dev/zero"], timeout_s=30)
        finally:
            target.close()
            adb("disconnect", serial)
