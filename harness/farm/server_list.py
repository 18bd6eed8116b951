"""What a running adb server sees: each device's serial, state and properties, and an inventory of them.

``qskew devices list`` prints this. A ready device (state ``device``) is asked for its properties
(model, ABI, OS, serial, Python) through a ``ServerTarget``; an unauthorized or offline one is listed
with what to do about it (``ServerDevice.advice``). ``inventory_toml`` writes ``reach = "adb-server"``
entries for the ready devices, ready to be used as ``--devices``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from harness.errors import TargetError
from harness.targets.adb_server import ServerTarget, parse_server, server_client, server_devices
from harness.text import escape_controls


@dataclass(frozen=True)
class ListedDevice:
    """One device of the server: ``advice`` says what to do when it is not ready; ``error`` why its
    properties could not be read."""

    serial: str
    state: str
    advice: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"serial": self.serial, "state": self.state, "advice": self.advice,
                "properties": dict(self.properties), "error": self.error}


def list_server(server: str, python: str = "python3") -> list[ListedDevice]:
    """Every device the adb server at ``server`` knows, ready ones with their properties."""
    server = "%s:%d" % parse_server(server)
    listed = []
    for dev in server_devices(server_client(server)):
        if dev.advice:
            listed.append(ListedDevice(dev.serial, dev.state, advice=dev.advice))
            continue
        try:
            with ServerTarget(device_name(dev.serial), serial=dev.serial, server=server, python=python) as target:
                listed.append(ListedDevice(dev.serial, dev.state, properties=target.properties()))
        except TargetError as exc:
            listed.append(ListedDevice(dev.serial, dev.state, error=str(exc)))
    return listed


def device_name(serial: str) -> str:
    """An inventory name for ``serial``: unsafe characters (``/``, ``\\``, ``=``, controls) become ``-``.

    >>> device_name("127.0.0.1:5555")
    '127.0.0.1:5555'
    """
    name = re.sub(r"[/\\=\x00-\x1f\x7f]", "-", serial).replace("..", "--")
    return name or "device"


def inventory_toml(devices: Sequence[ListedDevice], server: str) -> str:
    """``[[device]]`` tables (``reach = "adb-server"``) for the ready devices of ``devices``."""
    server = "%s:%d" % parse_server(server)
    q = json.dumps  # a JSON string is a valid TOML basic string
    lines = [f"# written by `qskew devices list --server {server} --write`: the ready devices of that adb server"]
    for dev in devices:
        if dev.state != "device" or dev.error:
            continue
        props = dev.properties
        labels = {k: str(props[k]) for k in ("model", "abi", "os_release") if props.get(k)}
        label_text = ", ".join(f"{k} = {q(v)}" for k, v in labels.items())
        lines += ["", "[[device]]", f"name = {q(device_name(dev.serial))}", 'reach = "adb-server"',
                  f"serial = {q(dev.serial)}", f"server = {q(server)}", f"labels = {{ {label_text} }}"]
    return "\n".join(lines) + "\n"


def format_listing(devices: Sequence[ListedDevice], server: str) -> str:
    """One line per device (serial, state, model, ABI, OS, device serial), then advice lines."""
    if not devices:
        return f"the adb server at {server} lists no device (`adb connect HOST:PORT`, or plug one in)"
    rows = [("SERIAL", "STATE", "MODEL", "ABI", "OS", "SERIALNO")]
    notes = []
    for dev in devices:
        p = dev.properties
        cells = (dev.serial, dev.state, p.get("model"), p.get("abi"), p.get("os_release"), p.get("serialno"))
        rows.append(tuple(escape_controls(c or "-") for c in cells))
        if dev.advice or dev.error:
            notes.append(f"  {escape_controls(dev.serial)}: {escape_controls(dev.advice or dev.error)}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return text + ("\n" + "\n".join(notes) if notes else "")
