"""From an inventory entry to a connected ``Target``: the one place that knows every reach kind.

``local`` is a child process on this machine; ``adb-tcp`` / ``adb-usb`` are ``AdbTarget``s;
``adb-server`` is a ``ServerTarget`` (the device through a running adb server);
``simulated`` starts a :class:`harness.targets.simulate.simulator.SimulatedDevice` on loopback and connects an
``AdbTarget`` to it over real ADB, so everything after the connection is the same code path a
phone takes. Its shell is confined to its own root (``harness.targets.simulate.host_root``),
whose ``/data/local/tmp/qskew`` is qskew's work folder. That file system is kept in qskew's cache (one folder per device
name), so the content-addressed files it received survive between runs, as on a real device.
It authenticates qskew like any client: its trusted-keys file (``<name>.adb_keys`` beside that
folder) lists exactly the public half of the ADB key qskew connects with (``adb_keys``).

``board`` is a simulated device whose shell runs inside an emulated ARM board
(``harness.targets.board``): the board is built or reused, then everything runs as on ``simulated``,
with device paths (``/data/local/tmp/qskew``) and the board's ``python3``.

>>> target = open_target(load_inventory(None).get("simulated"))   # doctest: +SKIP
>>> target.properties()["model"]                                   # doctest: +SKIP
'qskew simulated device'
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import ConfigError
from harness.farm.inventory import RUNNER_KINDS, DeviceSpec, check_device_name
from harness.fsutil import atomic_write_text
from harness.logs import job_logger
from harness.paths import cache_dir
from harness.targets import adb_keys
from harness.targets.adb import AdbTarget
from harness.targets.base import Target

log = logging.getLogger(__name__)
SIM_WORKDIR = "data/local/tmp/qskew"  # below the simulated device's root, where a phone keeps it


def open_target(spec: DeviceSpec) -> Target:
    """Connect to the device ``spec`` describes; the caller closes the target."""
    if spec.runner not in RUNNER_KINDS:
        raise ConfigError(f"device {spec.name!r}: runner kind {spec.runner!r} is not supported")
    if spec.reach == "local":
        from harness.targets.local import LocalTarget

        workdir = Path(spec.workdir) if spec.workdir else cache_dir("local-device")
        return LocalTarget(workdir, python=spec.python, name=spec.name)
    if spec.reach in ("simulated", "board"):
        return _simulated(spec)
    if spec.reach == "adb-server":
        from harness.targets.adb_server import ServerTarget

        return ServerTarget(spec.name, serial=spec.serial, server=spec.server, workdir=spec.workdir,
                            python=spec.python)
    if spec.reach == "adb-tcp":
        return AdbTarget(spec.name, address=spec.address, workdir=spec.workdir, python=spec.python)
    return AdbTarget(spec.name, serial=spec.serial, workdir=spec.workdir, python=spec.python)


def simulated_root(name: str) -> Path:
    """The folder that plays the file system of the simulated device called ``name``."""
    return cache_dir("simulated-devices") / check_device_name(name, "simulated device")


def trust_own_key(name: str) -> Path:
    """Write the trusted-keys file of simulated device ``name``: qskew's own public key, only."""
    key_line, _path = adb_keys.public_key(None, name)
    keys_file = simulated_root(name).with_name(f"{name}.adb_keys")
    atomic_write_text(keys_file, key_line + "\n")
    return keys_file


def _simulated(spec: DeviceSpec) -> Target:
    from harness.targets.simulate.simulator import DEFAULT_FEATURES, SimulatedDevice

    root = simulated_root(spec.name)
    root.mkdir(parents=True, exist_ok=True)
    features = DEFAULT_FEATURES if spec.features is None else spec.features
    keys = trust_own_key(spec.name) if spec.auth else None
    board = _board_shell(spec, root)
    python = None if board is not None else spec.python  # a board device runs the board's python3
    sim = SimulatedDevice(root, python=python, max_payload=spec.max_payload, features=features,
                          auth=spec.auth, trusted_keys=keys, serial=f"qskew-sim-{spec.name}",
                          board=board).start()
    host, port = sim.address
    # both kinds are confined (their root is their /): the work folder is a device path, a relative
    # one below /
    workdir = "/" + (spec.workdir or SIM_WORKDIR).lstrip("/")
    try:
        target = SimulatedAdbTarget(sim, spec.name, address=f"{host}:{port}", workdir=workdir,
                                    python="python3")
    except BaseException:
        sim.stop()
        raise
    job_logger(log, spec.name).info("simulated device on %s:%d (root %s)", host, port, root)
    return target


def _board_shell(spec: DeviceSpec, root: Path):
    """The BoardShell of a ``reach = "board"`` device (None for a plain simulated one)."""
    if spec.reach != "board":
        return None
    from harness.targets.board.device import BoardShell, resolve_board

    say = job_logger(log, spec.name).info
    return BoardShell(resolve_board(spec.board, progress=say), root)


class SimulatedAdbTarget(AdbTarget):
    """An AdbTarget that owns the simulated device it talks to: closing it stops the device.

    ``simulator`` exposes the device's fault hooks (``vanish_after``...) to tests.
    """

    def __init__(self, simulator, name: str, **options):
        super().__init__(name, **options)
        self.simulator = simulator

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.simulator.stop()
