"""A device's GPU adapter and driver, as far as something on the device says -- never a guess.

Two sources, in this order:

- ``vulkaninfo --summary`` (Debian's ``vulkan-tools``) run on the device through its Target: each
  Vulkan device's ``deviceName``, ``deviceType``, ``driverName``, ``driverInfo`` and
  ``driverVersion``, as the Vulkan loader and the installed drivers (ICDs) report them;
- the log of a GPU job (LiteRT's GPU accelerator: Dawn's "Selected adapter: <name>, ...,
  backend=Vulkan, adapterType=..." line, recorded by the device runner in the job's
  ``runtime_report``); it names the adapter, not the driver.

Whatever neither says is "unknown".

>>> parse_vulkaninfo("GPU0:\\n\\tdeviceName = SwiftShader Device (Subzero)\\n\\tdeviceType = "
...                  "PHYSICAL_DEVICE_TYPE_CPU\\n\\tdriverName = SwiftShader driver\\n\\tdriverVersion = 5.0.0\\n")
[{'adapter': 'SwiftShader Device (Subzero) (PHYSICAL_DEVICE_TYPE_CPU)', 'driver': 'SwiftShader driver 5.0.0'}]
"""

from __future__ import annotations

import re
from typing import Mapping

from harness.errors import QskewError
from harness.records import ExecutionPlan

UNKNOWN = "unknown"
VULKANINFO = ("vulkaninfo", "--summary")
VULKANINFO_TIMEOUT_S = 30.0
_GPU_HEADER = re.compile(r"^GPU\d+:\s*$")
_FIELD = re.compile(r"^\s*(\w+)\s*=\s*(.*?)\s*$")


def unknown() -> dict[str, str]:
    return {"adapter": UNKNOWN, "driver": UNKNOWN, "source": ""}


def parse_vulkaninfo(text: str) -> list[dict[str, str]]:
    """One {"adapter", "driver"} per GPU block of ``vulkaninfo --summary``'s "Devices:" section."""
    devices: list[dict[str, str]] = []
    fields: dict[str, str] | None = None
    for line in text.splitlines():
        if _GPU_HEADER.match(line):
            fields = {}
            devices.append(fields)
            continue
        match = _FIELD.match(line) if fields is not None else None
        if match:
            fields[match.group(1)] = match.group(2)
    return [_described(f) for f in devices if f.get("deviceName")]


def _described(fields: Mapping[str, str]) -> dict[str, str]:
    kind = fields.get("deviceType", "")
    driver = " ".join(v for v in (fields.get("driverName", ""), fields.get("driverInfo", ""),
                                  fields.get("driverVersion", "")) if v)
    return {"adapter": fields["deviceName"] + (f" ({kind})" if kind else ""), "driver": driver or UNKNOWN}


def from_vulkaninfo(target) -> dict[str, str] | None:
    """The adapters ``vulkaninfo --summary`` lists on ``target``; None when it is missing, fails
    or lists no device."""
    try:
        result = target.run(list(VULKANINFO), timeout_s=VULKANINFO_TIMEOUT_S)
    except QskewError:  # not installed (the command cannot start) or it hung
        return None
    devices = parse_vulkaninfo(result.stdout) if result.returncode == 0 else []
    if not devices:
        return None
    return {"adapter": "; ".join(d["adapter"] for d in devices),
            "driver": "; ".join(d["driver"] for d in devices), "source": "vulkaninfo"}


def from_gpu_job(plan: ExecutionPlan | None) -> dict[str, str] | None:
    """The adapter a GPU job's runtime named (its execution plan's ``runtime_report``), or None."""
    report = plan.runtime_report if plan is not None else None
    adapter = (report.adapter if report is not None else None) or UNKNOWN
    if adapter in (UNKNOWN, "cpu"):
        return None
    details = [v for v in (report.backend, report.adapter_type) if v and v != UNKNOWN]
    return {"adapter": adapter + (f" ({', '.join(details)})" if details else ""), "driver": UNKNOWN,
            "source": "accelerator log"}
