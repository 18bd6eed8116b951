"""Device commands: ``qskew device simulate`` (and, later, ``qskew devices check``).

``qskew device simulate`` serves a simulated ADB device on 127.0.0.1 until SIGINT/SIGTERM::

    $ qskew device simulate --port 0
    qskew simulated device qskew-sim listening on 127.0.0.1:40123 (root /tmp/qskew-device-x1y2)
    $ adb connect 127.0.0.1:40123
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
from pathlib import Path

ROOT_PREFIX = "qskew-device-"  # name of the temporary sandbox when --root is not given


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
    device = sub.add_parser("device", help="simulated ADB device")
    device.set_defaults(func=lambda args: device.print_help())
    device_sub = device.add_subparsers(title="device commands", metavar="SUBCOMMAND")
    _register_simulate(device_sub)


def _register_simulate(device_sub) -> None:
    s = device_sub.add_parser("simulate", help="serve a simulated ADB device on 127.0.0.1 until Ctrl-C",
                              description="A real ADB endpoint (adb and adb-shell connect to it) running "
                              "shell commands with sh -c inside a sandbox folder.")
    s.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one; 5555-5585 are refused)")
    s.add_argument("--root", type=Path, default=None, help="sandbox folder playing the device's file system "
                   "(default: a new temporary folder, removed on exit)")
    s.add_argument("--python", default=None, help="interpreter that python3/python run on the device "
                   "(default: this one)")
    s.add_argument("--auth", action="store_true", help="require RSA authentication (new public keys are accepted)")
    s.add_argument("--trusted-keys", type=Path, default=None, help="adb_keys file of trusted public keys; "
                   "with --auth, accepted keys are appended")
    s.add_argument("--max-payload", type=int, default=1 << 20, help="maxdata: 4096, 262144 or 1048576 (default)")
    s.add_argument("--features", default=None, help="comma-separated CNXN features, or 'none' for a legacy "
                   "device without shell_v2 (default: shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir)")
    s.add_argument("--serial", default="qskew-sim", help="ro.serialno (default: qskew-sim)")
    s.add_argument("--disk-quota-bytes", type=int, default=None, help="bytes the sandbox may hold; "
                   "pushes beyond it fail with 'No space left on device'")
    s.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from harness.targets.simulate.simulator import DEFAULT_FEATURES, SimulatedDevice
    from harness.errors import ConfigError

    features = DEFAULT_FEATURES if args.features is None else _parse_features(args.features)
    own_root = args.root is None
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)) if own_root else args.root
    try:
        try:
            device = SimulatedDevice(root, port=args.port, auth=args.auth, trusted_keys=args.trusted_keys,
                                     max_payload=args.max_payload, features=features, python=args.python,
                                     serial=args.serial, disk_quota_bytes=args.disk_quota_bytes)
            device.start()
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot start the simulated device on port {args.port}: {exc}") from exc
        _serve_until_signal(device)
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
    return 0


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
