"""The device inventory: which devices exist, how to reach them, and which ones an experiment selects.

An inventory is a TOML file (``devices.toml``) with one ``[[device]]`` table per device::

    [[device]]
    name = "pixel7"                    # used in logs, errors and the run directory
    reach = "adb-tcp"                  # adb-tcp | adb-usb | adb-server | local | simulated | board
    address = "192.168.1.20:5555"      # adb-tcp: host:port (after `adb tcpip 5555`)
    # serial = "28161FDH2003LZ"        # adb-usb, adb-server: the serial `adb devices` shows
    # server = "127.0.0.1:5037"        # adb-server: the running adb server that owns the device
    runner = "python"                  # runner kind: python (device_runner on the device's Python)
                                       # or benchmark_model (TFLite's benchmark_model binary)
    # benchmark_model = "bin/android_aarch64_benchmark_model"  # runner = benchmark_model: the
                                       # binary for the device's ABI, a host path qskew pushes once
    # profile = "edgetpu"              # what the device's accelerator accepts (see farm.profiles)
    python = "python3"                 # the interpreter that runs the runner on the device
    workdir = "/data/local/tmp/qskew"  # a folder qskew owns on the device (its cache and jobs)
    delegates = ["xnnpack", "reference"]   # what the device offers; empty or absent: anything
    labels = { soc = "tensor-g2", accelerator = "tpu", os = "android" }
    # pool = "pixel7s"                 # devices sharing a pool label share one job queue (farm.pool);
                                       # "auto": the pool of devices with the same model, ABI, runtime

``reach = "simulated"`` is a simulated ADB device that qskew starts on loopback for the run and
stops afterwards (``python`` is then the host interpreter the simulated device runs, mounted
read-only in its confined root; its file system lives in qskew's cache, so its content-addressed
files survive between runs; a relative ``workdir`` lies below that file system's ``/``, default
``data/local/tmp/qskew``; as on a phone only ``/data/local/tmp`` is writable). It requires ADB
authentication and trusts only qskew's own key; ``auth = false`` turns that off (loopback only).

``reach = "adb-server"`` reaches the device through a running ``adb`` server (the one a lab keeps
on every host, which owns the USB phones): ``serial`` as ``adb devices`` lists it, ``server`` its
``host:port`` (default 127.0.0.1:5037). ``qskew devices list --write FILE`` writes such entries.

``reach = "board"`` is the same simulated device with an emulated ARM board behind it
(``harness.targets.board``): ``board = "aarch64"`` (or ``"armv7l"``) builds or reuses the cached
board of that architecture, ``board = "path/to/folder"`` uses a board made by ``qskew board build``
(relative to the inventory file); its shell, Python and runtime are the board's (needs root).

A device name becomes a folder name (a simulated device's file system), so it may not hold ``/``,
``\\``, ``..``, NUL or other control characters.
``reach = "local"`` runs the runner as a child process of this machine.

Two devices are always known, even without a file: ``local`` (this machine) and ``simulated`` (a
simulated ADB device running this Python). A file may redefine either name. ``board-aarch64`` and
``board-armv7l`` (``reach = "board"`` with that architecture's cached board) are known on demand:
selected by name they exist, but ``qskew devices check`` without ``--device`` does not build them.

Selectors (``[run] targets`` of an experiment, ``--device`` on the command line) are device names,
pool names (every member of the pool), or ``key=value`` to take every device whose label (or
``reach``/``runner``/``pool``) has that value.

Devices with the same ``pool`` are one target: each job of the pool runs once, on whichever member
is free, and is stored under the pool's name (``harness.farm.pool``). A pool name may not also be a
device's name. ``pool = "auto"`` pools the device with the selected devices that report the same
model, ABI and runtime (runner kind, Python version) once connected (``schedule.auto_pool``).

>>> inv = load_inventory(None)
>>> [d.name for d in inv.select(["local"])]
['local']
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.errors import ConfigError
from harness.farm.inventory_check import check_device_table
from harness.runners import STANDIN_BINARY
from harness.runners.registry import RUNNERS

REACH_KINDS = ("adb-tcp", "adb-usb", "local", "simulated", "board", "adb-server")
SIMULATED_REACHES = ("simulated", "board")  # qskew starts these devices itself, on loopback
RUNNER_KINDS = tuple(RUNNERS)  # harness.runners.registry: python, benchmark_model
PROFILES = ("", "edgetpu")  # "": any variant; edgetpu: full-integer, fixed-shape, batch-1 variants
DEFAULT_WORKDIR = "/data/local/tmp/qskew"  # writable and exec-able over adb on stock Android
DEFAULT_PYTHON = "python3"
AUTO_POOL = "auto"                         # pool = "auto": grouped by what the device reports
ENV_DEVICES = "QSKEW_DEVICES"              # an inventory file used when no --devices is given
LOCAL_FILE = "devices.toml"                # ...else ./devices.toml when it exists


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the inventory: how to reach it and what it offers."""

    name: str
    reach: str
    address: str = ""
    serial: str = ""
    server: str = ""            # reach = "adb-server": host:port of the adb server ("" the default)
    runner: str = "python"
    python: str = DEFAULT_PYTHON
    benchmark_model: str = ""   # runner = benchmark_model: host path of the binary, or "standin"
    profile: str = ""           # "" or "edgetpu" (PROFILES)
    workdir: str = DEFAULT_WORKDIR
    delegates: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # simulated devices only: what the simulated adbd advertises
    max_payload: int = 1 << 20
    features: tuple[str, ...] | None = None   # None: the simulator's defaults; () a legacy device
    auth: bool = True
    board: str = ""   # reach = "board": an architecture (aarch64, armv7l) or a board folder
    pool: str = ""    # devices with one pool label share a job queue; "" a device of its own

    def offers(self, delegate: str) -> bool:
        """Whether this device offers ``delegate`` (an external delegate matches "external")."""
        if not self.delegates:
            return True
        kind = delegate.split(":", 1)[0]
        return delegate in self.delegates or kind in self.delegates

    def matches(self, selector: str) -> bool:
        """True for the device's own name or pool, or a ``key=value`` its labels/reach/runner/pool satisfy."""
        if "=" not in selector:
            return selector == self.name or (bool(self.pool) and selector == self.pool)
        key, value = (s.strip() for s in selector.split("=", 1))
        facts = {**self.labels, "reach": self.reach, "runner": self.runner, "profile": self.profile,
                 "pool": self.pool}
        return str(facts.get(key)) == value

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "reach": self.reach, "runner": self.runner, "python": self.python,
               "workdir": self.workdir, "delegates": list(self.delegates), "labels": dict(self.labels)}
        if self.address:
            out["address"] = self.address
        if self.serial:
            out["serial"] = self.serial
        if self.server:
            out["server"] = self.server
        if self.benchmark_model:
            out["benchmark_model"] = self.benchmark_model
        if self.profile:
            out["profile"] = self.profile
        if self.board:
            out["board"] = self.board
        if self.pool:
            out["pool"] = self.pool
        return out

    @property
    def group(self) -> str:
        """The target this device's jobs are stored under: its pool, else its own name."""
        return self.pool or self.name


@dataclass(frozen=True)
class Inventory:
    """The devices known to this run, from a file and the built-ins."""

    devices: tuple[DeviceSpec, ...]
    source: str

    def get(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        if on_demand_device(name) is not None:
            return on_demand_device(name)
        raise ConfigError(f"{self.source}: no device named {name!r}; known: {self.names()}")

    def names(self) -> str:
        return ", ".join(d.name for d in self.devices)

    def select(self, selectors: Iterable[str]) -> list[DeviceSpec]:
        """Every device matching any selector, in inventory order, each once.

        A selector that matches nothing is an error (a typo would otherwise silently drop a device).
        """
        selectors = list(selectors)
        if not selectors:
            raise ConfigError(f"{self.source}: no device selected")
        chosen: list[DeviceSpec] = []
        for sel in selectors:
            hits = [d for d in self.devices if d.matches(sel)] or [d for d in [on_demand_device(sel)] if d]
            if not hits:
                what = "label" if "=" in sel else "device"
                raise ConfigError(f"{self.source}: no {what} matches {sel!r}; devices: {self.names()}")
            chosen.extend(d for d in hits if d not in chosen)
        return [d for d in self.devices if d in chosen] + [d for d in chosen if d not in self.devices]


def builtin_devices() -> tuple[DeviceSpec, ...]:
    """The two devices every inventory has unless a file redefines them."""
    return (DeviceSpec(name="local", reach="local", python=sys.executable, workdir="",
                       labels={"os": "linux", "kind": "host"}),
            DeviceSpec(name="simulated", reach="simulated", python=sys.executable, workdir="",
                       labels={"os": "linux", "kind": "simulated"}))


BOARD_DEVICE_PREFIX = "board-"  # board-aarch64, board-armv7l: known on demand (module docstring)


def on_demand_device(name: str) -> DeviceSpec | None:
    """``board-<arch>`` for a board architecture: that architecture's cached board; else None."""
    from harness.targets.board.spec import ARCHES

    arch = name[len(BOARD_DEVICE_PREFIX):] if name.startswith(BOARD_DEVICE_PREFIX) else ""
    if arch not in ARCHES:
        return None
    return DeviceSpec(name=name, reach="board", board=arch, python=DEFAULT_PYTHON,
                      labels={"os": "linux", "kind": "board", "arch": arch})


def inventory_path(explicit: str | os.PathLike | None) -> Path | None:
    """The file to read: ``explicit``, else $QSKEW_DEVICES, else ./devices.toml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_DEVICES):
        return Path(os.environ[ENV_DEVICES])
    local = Path(LOCAL_FILE)
    return local if local.is_file() else None


def load_inventory(path: str | os.PathLike | None) -> Inventory:
    """Read an inventory file (``None``: the rule of :func:`inventory_path`) plus the built-ins."""
    file = inventory_path(path)
    if file is None:
        return Inventory(builtin_devices(), "built-in devices")
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"device inventory {file} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"device inventory {file} cannot be read: {exc}") from exc
    return from_dict(raw, source=str(file), base_dir=file.resolve().parent)


def from_dict(raw: Mapping[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> Inventory:
    """Build and check an inventory from parsed TOML (``{"device": [{...}, ...]}``)."""
    unknown = set(raw) - {"device"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; use [[device]] tables")
    tables = raw.get("device", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: 'device' must be an array of tables ([[device]])")
    parsed = [_device(t, f"{source}: device #{i + 1}", base_dir) for i, t in enumerate(tables)]
    names = [d.name for d in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: device name(s) used twice: {', '.join(dupes)}")
    clash = sorted({d.pool for d in parsed if d.pool} & set(names))
    if clash:
        raise ConfigError(f"{source}: pool name(s) also used as a device name: {', '.join(clash)}")
    extra = tuple(d for d in builtin_devices() if d.name not in names)
    return Inventory(tuple(parsed) + extra, source)


def _device(table: Any, where: str, base_dir: Path | None) -> DeviceSpec:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    check_device_table(table, where)  # unknown keys, and every value's type (inventory_check)
    name = table.get("name")
    if not isinstance(name, str) or not name.strip() or "=" in name:
        raise ConfigError(f"{where}: needs a name (a non-empty string without '=')")
    check_device_name(name, where)
    where = f"{where} ({name!r})"
    reach = table.get("reach")
    if reach not in REACH_KINDS:
        raise ConfigError(f"{where}: reach must be one of {', '.join(REACH_KINDS)}, got {reach!r}")
    runner = table.get("runner", "python")
    if runner not in RUNNER_KINDS:
        raise ConfigError(f"{where}: unknown runner {runner!r}; known: {', '.join(RUNNER_KINDS)}")
    _require_reach_fields(table, reach, where)
    binary = _benchmark_model(table, runner, where, base_dir)
    profile = table.get("profile", "")
    if profile not in PROFILES:
        raise ConfigError(f"{where}: unknown profile {profile!r}; known: {', '.join(p for p in PROFILES if p)}")
    labels = table.get("labels", {})
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{where}: labels must be a table of key = \"value\"")
    delegates = _strings(table.get("delegates", []), where, "delegates")
    _check_delegates(delegates, where)
    python = str(table.get("python", sys.executable if reach in ("local", "simulated") else DEFAULT_PYTHON))
    if reach in ("local", "simulated") and base_dir is not None and os.sep in python \
            and not os.path.isabs(python):
        python = str(base_dir / python)  # a host path written relative to the inventory file
    default_dir = "" if reach in ("local", "simulated") else DEFAULT_WORKDIR
    features = table.get("features")
    board = _board(table, reach, where, base_dir)
    pool = table.get("pool", "")
    if not isinstance(pool, str) or "=" in pool:
        raise ConfigError(f"{where}: pool must be a name (a string without '='), got {pool!r}")
    if pool:
        check_device_name(pool, f"{where}: pool")
    return DeviceSpec(name=name, reach=reach, address=str(table.get("address", "")),
                      serial=str(table.get("serial", "")), server=str(table.get("server", "")),
                      runner=runner, python=python,
                      benchmark_model=binary, profile=profile,
                      workdir=str(table.get("workdir", default_dir)), delegates=delegates,
                      labels={str(k): str(v) for k, v in labels.items()},
                      max_payload=int(table.get("max_payload", 1 << 20)),
                      features=None if features is None else _strings(features, where, "features"),
                      auth=bool(table.get("auth", True)), board=board, pool=pool)


def check_device_name(name: str, where: str) -> str:
    """``name`` if it is safe as one folder name, else ConfigError naming ``where``.

    >>> check_device_name("pixel 7 (lab)", "devices.toml")
    'pixel 7 (lab)'
    """
    bad = [c for c in name if c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F]
    if bad or ".." in name or name in ("", "."):
        shown = name.encode("unicode_escape").decode("ascii")
        raise ConfigError(f"{where}: device name '{shown}' may not hold '/', '\\', '..', NUL or other "
                          "control characters: it becomes a folder name")
    return name


def _require_reach_fields(table: Mapping[str, Any], reach: str, where: str) -> None:
    if reach == "adb-tcp":
        address = str(table.get("address", ""))
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{where}: adb-tcp needs address = \"host:port\", got {address!r}")
    if reach in ("adb-usb", "adb-server") and not table.get("serial"):
        raise ConfigError(f"{where}: {reach} needs serial = \"...\" (as `adb devices` shows it)")
    if "server" in table:
        if reach != "adb-server":
            raise ConfigError(f"{where}: server only applies to reach = \"adb-server\"")
        _, _, port = str(table["server"]).rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"{where}: server must be \"host:port\" (e.g. 127.0.0.1:5037), "
                              f"got {table['server']!r}")
    if reach not in SIMULATED_REACHES:
        for key in ("max_payload", "features", "auth"):
            if key in table:
                raise ConfigError(f"{where}: {key} only applies to reach = \"simulated\" or \"board\"")


def _board(table: Mapping[str, Any], reach: str, where: str, base_dir: Path | None) -> str:
    """The board of a ``reach = "board"`` device: an architecture name, or a folder (made absolute)."""
    from harness.targets.board.spec import ARCHES

    board = table.get("board", "")
    if reach != "board":
        if board:
            raise ConfigError(f"{where}: board only applies to reach = \"board\"")
        return ""
    if not isinstance(board, str) or not board:
        raise ConfigError(f"{where}: reach = \"board\" needs board = \"aarch64\" (or \"armv7l\", or the "
                          f"folder of a board made by `qskew board build`)")
    if board in ARCHES:
        return board
    path = Path(board).expanduser()
    return str(base_dir / path if not path.is_absolute() and base_dir is not None else path)


def _benchmark_model(table: Mapping[str, Any], runner: str, where: str, base_dir: Path | None) -> str:
    """The benchmark_model binary's host path (relative to the inventory file), or "standin"."""
    binary = table.get("benchmark_model", "")
    if runner != "benchmark_model":
        if binary:
            raise ConfigError(f"{where}: benchmark_model only applies to runner = \"benchmark_model\"")
        return ""
    if not isinstance(binary, str) or not binary:
        raise ConfigError(f"{where}: runner = \"benchmark_model\" needs benchmark_model = \"<host path "
                          f"of the binary for the device's ABI>\" (or \"{STANDIN_BINARY}\")")
    if binary == STANDIN_BINARY:
        return binary
    path = Path(binary).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)  # checked when a job needs it (harness.runners.registry): an inventory may list it ahead


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _check_delegates(delegates: Sequence[str], where: str) -> None:
    from device_runner.protocol import DELEGATES

    for d in delegates:
        if d.split(":", 1)[0] not in DELEGATES:
            raise ConfigError(f"{where}: unknown delegate {d!r}; known: {', '.join(DELEGATES)}")
