"""``qskew devices``: the device inventory. ``devices check`` says what each device really offers;
``devices list`` shows what a running adb server sees (and ``--write``s an inventory of it);
``devices simulate`` serves a simulated ADB device on 127.0.0.1 until SIGINT/SIGTERM. It requires
ADB authentication and trusts only the keys in ``--trusted-keys`` (default
``~/.config/qskew/simulated_adb_keys``, which starts with this user's own ADB key, the one ``adb``
and qskew use); ``--accept-new-keys`` trusts any key (with a warning); ``--host`` other than
loopback needs auth and refuses ``--no-auth``/``--accept-new-keys``::

    $ qskew devices check --devices devices.toml
    $ qskew devices simulate --port 0
    qskew simulated device qskew-sim listening on 127.0.0.1:40123 (root /tmp/qskew-device-x1y2)
    $ adb connect 127.0.0.1:40123

``qskew device ...`` (the old name of the group) still works; the CLI says on stderr that it is
deprecated (``DEPRECATED_ALIAS``).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from harness.commands import _common
from harness.text import escape_controls

EXIT_UNREACHABLE = 1  # some selected device could not be reached or checked
ROOT_PREFIX = "qskew-device-"  # name of the temporary sandbox when --root is not given
SIM_KEYS_NAME = "simulated_adb_keys"  # default trusted-keys file, beside qskew's own ADB key
DEPRECATED_ALIAS = "device"  # `qskew device simulate` was the first name of `qskew devices simulate`


def register(sub) -> None:
    """Add ``qskew devices`` (and its deprecated alias ``qskew device``) to the ``qskew`` subparsers."""
    p = sub.add_parser("devices", aliases=[DEPRECATED_ALIAS],
                       help="the device inventory: check what each device offers; simulate one "
                            f"('{DEPRECATED_ALIAS}' is a deprecated alias)")
    dsub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    _register_check(dsub)
    _register_list(dsub)
    _register_simulate(dsub)
    _register_ray_resources(dsub)
    p.set_defaults(func=_common.print_group_help(p))


def _register_check(dsub) -> None:
    c = dsub.add_parser("check", help="connect to each device; print ABI, OS, Python, runtime, free space, "
                                      "the delegates that really load and the GPU adapter and driver",
                        epilog="exit codes: 0 every device answered; 1 some device is unreachable; "
                               "2 the inventory cannot be read")
    c.add_argument("--devices", type=Path, default=None,
                   help="inventory file (default: $QSKEW_DEVICES, else ./devices.toml, else the built-in "
                        "'local' and 'simulated')")
    c.add_argument("--device", action="append", default=None, metavar="NAME|KEY=VALUE",
                   help="check only these devices (repeatable; default: all)")
    _common.add_json_flag(c)
    c.set_defaults(func=cmd_devices_check, heavy=True)


def cmd_devices_check(args: argparse.Namespace) -> int:
    from harness.farm.inventory import load_inventory
    from harness.farm.probe import check_device, probe_artifact

    inv = load_inventory(args.devices)
    specs = inv.select(args.device) if args.device else list(inv.devices)
    probe = probe_artifact()
    checks = [check_device(spec, probe) for spec in specs]
    if args.json:
        _common.print_json({"inventory": inv.source, "devices": [c.to_json() for c in checks]})
    else:
        print(f"inventory: {inv.source}")
        print(format_checks(checks))
    return EXIT_UNREACHABLE if any(c.error for c in checks) else 0


def _register_ray_resources(dsub) -> None:
    c = dsub.add_parser("ray-resources",
                        help="the `ray start --resources` of this host: one qskew-dev:<name> per device "
                             "of its inventory (for qskew run --executor ray)")
    c.add_argument("--devices", type=Path, default=None,
                   help="this host's inventory (default: $QSKEW_DEVICES, else ./devices.toml)")
    c.add_argument("--device", action="append", default=None, metavar="NAME|KEY=VALUE",
                   help="only these devices (repeatable; default: the inventory file's devices, not "
                        "the built-in 'local' and 'simulated' every host has)")
    c.set_defaults(func=cmd_devices_ray_resources)


def cmd_devices_ray_resources(args: argparse.Namespace) -> int:
    """Print the resources as the JSON ``ray start --resources`` takes::

        $ ray start --address HEAD:6379 --resources "$(qskew devices ray-resources)"
    """
    import json

    from harness.farm.inventory import builtin_devices, load_inventory
    from harness.farm.ray_executor import node_resources

    inv = load_inventory(args.devices)
    specs = inv.select(args.device) if args.device else [s for s in inv.devices if s not in builtin_devices()]
    print(json.dumps(node_resources(specs)))
    return 0


def _register_list(dsub) -> None:
    c = dsub.add_parser("list", help="what a running adb server sees: serial, state, model, ABI, OS; "
                                     "an unauthorized or offline device with what to do",
                        epilog="exit codes: 0 every listed device is ready; 1 some device is not ready "
                               "(or no server answers)")
    c.add_argument("--server", default="", metavar="HOST:PORT",
                   help="the adb server (default 127.0.0.1:5037; qskew never starts one)")
    c.add_argument("--write", type=Path, default=None, metavar="FILE",
                   help="also write an inventory (reach = \"adb-server\") of the ready devices to FILE")
    _common.add_json_flag(c)
    c.set_defaults(func=cmd_devices_list)


def cmd_devices_list(args: argparse.Namespace) -> int:
    from harness.farm.leases import held_leases
    from harness.farm.server_list import format_listing, inventory_toml, list_server
    from harness.fsutil import atomic_write_text
    from harness.targets.adb_server import parse_server

    server = "%s:%d" % parse_server(args.server)
    devices = list_server(server)
    if args.write is not None:
        atomic_write_text(args.write, inventory_toml(devices, server))
        print(f"wrote {args.write}", file=sys.stderr)
    held = held_leases()
    if args.json:
        _common.print_json({"server": server, "devices": [d.to_json() for d in devices], "leases": held})
    else:
        print(f"adb server: {server}")
        print(format_listing(devices, server))
        for h in held:  # who drives which device right now (harness.farm.leases)
            print(f"lease {h.get('key')}: pid {h.get('pid')} on {h.get('host')} since {h.get('start')}: "
                  f"{escape_controls(h.get('command', ''))}")
    return EXIT_UNREACHABLE if any(d.advice or d.error for d in devices) else 0


def format_checks(checks) -> str:
    """One row per device, its GPU adapter and driver (and where that was read), then one line per
    delegate that did not load and per error."""
    header = ("device", "reach", "reachable", "abi", "cpu", "os", "python", "runtime", "free", "delegates")
    rows = []
    notes = []
    for c in checks:
        p = c.properties
        loaded = [d for d, outcome in c.delegates.items() if outcome == "ok"]
        rows.append((c.name, c.reach, "yes" if c.reachable else "NO", str(p.get("abi", p.get("machine", ""))),
                     str(p.get("cpu_model") or p.get("processor") or "-")[:24], _os(p)[:28], str(p.get("python_version", "")),
                     c.runtime, _size(c.free_bytes), ",".join(loaded) or "-"))
        notes += [f"  {c.name}: {d}: {outcome}" for d, outcome in c.delegates.items() if outcome != "ok"]
        if c.error:
            notes.append(f"  {c.name}: ERROR {c.error}")
    # names, properties and errors come from the devices: never to the terminal raw
    rows = [tuple(escape_controls(v) for v in r) for r in rows]
    notes = [escape_controls(n) for n in notes]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + rows]
    gpus = [f"  {c.name}: adapter {c.gpu.get('adapter', 'unknown')}; driver {c.gpu.get('driver', 'unknown')}"
            + (f" (from {c.gpu['source']})" if c.gpu.get("source") else "") for c in checks if c.reachable]
    return "\n".join(lines + (["", "GPU (vulkaninfo, else a GPU job's log; never guessed):"] + gpus if gpus else [])
                     + (["", "not loading / errors:"] + notes if notes else []))


def _os(props) -> str:
    """Android release/SDK for ADB devices, the platform string for local ones."""
    if props.get("os_release") or props.get("sdk"):
        return f"android {props.get('os_release', '?')} (sdk {props.get('sdk', '?')})"
    return str(props.get("platform", ""))


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _register_simulate(dsub) -> None:
    s = dsub.add_parser("simulate", help="serve a simulated ADB device (127.0.0.1, ADB auth) until Ctrl-C",
                              description="A real ADB endpoint (adb and adb-shell connect to it) running "
                              "shell commands with sh -c confined to a folder that is its / (a private "
                              "mount namespace and chroot; needs root or user namespaces).")
    s.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one; 5555-5585 are refused)")
    s.add_argument("--root", type=Path, default=None, help="folder that is the device's / (its "
                   "data/local/tmp the only writable place; default: a new temporary folder, removed on exit)")
    s.add_argument("--python", default=None, help="interpreter that python3/python run on the device, "
                   "mounted read-only in it (default: this one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1); any "
                   "other needs auth with trusted keys only")
    s.add_argument("--trusted-keys", type=Path, default=None, help="adb_keys file of the public keys allowed "
                   f"in (default: {SIM_KEYS_NAME} in qskew's config folder, holding this user's ADB key)")
    s.add_argument("--accept-new-keys", action="store_true", help="trust ANY key a host offers and append "
                   "it to --trusted-keys (anyone who reaches the port gets a shell as you)")
    s.add_argument("--no-auth", action="store_true", help="no ADB authentication at all (loopback only)")
    s.add_argument("--max-payload", type=int, default=1 << 20, help="maxdata: 4096, 262144 or 1048576 (default)")
    s.add_argument("--features", default=None, help="comma-separated CNXN features, or 'none' for a legacy "
                   "device without shell_v2 (default: shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir)")
    s.add_argument("--serial", default="qskew-sim", help="ro.serialno (default: qskew-sim)")
    s.add_argument("--board", default=None, metavar="DIR|ARCH",
                   help="run the device's shell inside an emulated ARM board: a folder made by `qskew board "
                        "build`, or an architecture (aarch64, armv7l) whose cached board is built or reused; "
                        "needs root (namespaces, binfmt_misc, chroot)")
    s.add_argument("--disk-quota-bytes", type=int, default=None, help="bytes the sandbox may hold; "
                   "pushes beyond it fail with 'No space left on device'")
    s.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from harness.errors import ConfigError
    from harness.targets.simulate.simulator import DEFAULT_FEATURES, SimulatedDevice, check_listen_address

    features = DEFAULT_FEATURES if args.features is None else _parse_features(args.features)
    own_root = args.root is None
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)) if own_root else args.root
    try:
        board = _board_shell(args.board, root)
        try:
            check_listen_address(args.host, args.port, not args.no_auth, args.accept_new_keys)
            if args.accept_new_keys:
                print("qskew: WARNING: --accept-new-keys: any host that reaches this device gets a shell "
                      "as this user", file=sys.stderr, flush=True)
            keys = None if args.no_auth else args.trusted_keys or _own_trusted_keys()
            device = SimulatedDevice(root, host=args.host, port=args.port, auth=not args.no_auth,
                                     trusted_keys=keys, accept_new_keys=args.accept_new_keys,
                                     max_payload=args.max_payload, features=features, python=args.python,
                                     serial=args.serial, disk_quota_bytes=args.disk_quota_bytes, board=board)
            device.start()
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot start the simulated device on port {args.port}: {exc}") from exc
        _serve_until_signal(device)
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _own_trusted_keys() -> Path:
    """qskew's default trusted-keys file for ``devices simulate``, made to list this user's ADB key."""
    from harness.targets import adb_keys
    from harness.targets.simulate import auth

    key_line, _path = adb_keys.public_key(None, "simulated device")
    keys_file = adb_keys.default_key_path().with_name(SIM_KEYS_NAME)
    auth.ensure_trusted(keys_file, key_line)
    return keys_file


def _board_shell(where: str | None, root: Path):
    """The BoardShell of ``--board`` (None without it); the device starts and stops its board."""
    if where is None:
        return None
    from harness.targets.board.device import BoardShell, resolve_board

    return BoardShell(resolve_board(where, progress=lambda m: print(f"board: {m}", file=sys.stderr)), root)


def _parse_features(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(f.strip() for f in text.split(",") if f.strip())


def _serve_until_signal(device) -> None:
    """Print the ready line, serve until SIGINT/SIGTERM, then stop the device."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        host, port = device.address
        print(f"qskew simulated device {device.serial} listening on {host}:{port} (root {device.root})", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        device.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
