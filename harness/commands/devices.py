"""``qskew devices check``: connect to every device of the inventory and say what it really offers."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_UNREACHABLE = 1  # some selected device could not be reached or checked


def register(sub) -> None:
    """Add ``qskew devices`` to the ``qskew`` subparsers."""
    p = sub.add_parser("devices", help="the device inventory: check what each device offers")
    dsub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    c = dsub.add_parser("check", help="connect to each device; print ABI, OS, Python, runtime, free space "
                                      "and the delegates that really load",
                        epilog="exit codes: 0 every device answered; 1 some device is unreachable; "
                               "2 the inventory cannot be read")
    c.add_argument("--devices", type=Path, default=None,
                   help="inventory file (default: $QSKEW_DEVICES, else ./devices.toml, else the built-in "
                        "'local' and 'simulated')")
    c.add_argument("--device", action="append", default=None, metavar="NAME|KEY=VALUE",
                   help="check only these devices (repeatable; default: all)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_devices_check, heavy=True)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def cmd_devices_check(args: argparse.Namespace) -> int:
    from harness.cli import _print_json
    from harness.farm.inventory import load_inventory
    from harness.farm.probe import check_device, probe_artifact

    inv = load_inventory(args.devices)
    specs = inv.select(args.device) if args.device else list(inv.devices)
    probe = probe_artifact()
    checks = [check_device(spec, probe) for spec in specs]
    if args.json:
        _print_json({"inventory": inv.source, "devices": [c.to_json() for c in checks]})
    else:
        print(f"inventory: {inv.source}")
        print(format_checks(checks))
    return EXIT_UNREACHABLE if any(c.error for c in checks) else 0


def format_checks(checks) -> str:
    """One row per device, then one line per delegate that did not load and per error."""
    header = ("device", "reach", "reachable", "abi", "os", "python", "runtime", "free", "delegates")
    rows = []
    notes = []
    for c in checks:
        p = c.properties
        loaded = [d for d, outcome in c.delegates.items() if outcome == "ok"]
        rows.append((c.name, c.reach, "yes" if c.reachable else "NO", str(p.get("abi", p.get("machine", ""))),
                     _os(p)[:28], str(p.get("python_version", "")),
                     c.runtime, _size(c.free_bytes), ",".join(loaded) or "-"))
        notes += [f"  {c.name}: {d}: {outcome}" for d, outcome in c.delegates.items() if outcome != "ok"]
        if c.error:
            notes.append(f"  {c.name}: ERROR {c.error}")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines + (["", "not loading / errors:"] + notes if notes else []))


def _os(props) -> str:
    """Android release/SDK for ADB devices, the platform string for local ones."""
    if props.get("os_release") or props.get("sdk"):
        return f"android {props.get('os_release', '?')} (sdk {props.get('sdk', '?')})"
    return str(props.get("platform", ""))


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
