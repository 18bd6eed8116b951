"""Progress of a farm run: one live line per device, and a summary kept in the run directory.

Each device has a line (a ``tqdm`` bar at its own position) showing the job it runs and its
samples/s; the job threads report to :class:`FarmProgress`, which also counts what a person
reading a farm run wants at the end: retries, drained devices and broken leases. :meth:`close`
prints that summary and writes it, with every device's last line, to ``farm.json`` in the run
directory (rewritten whole at the end of each session; it is not part of any job's parts).

>>> p = FarmProgress(["d1"], enabled=False)
>>> p.start("d1", "int8/xnnpack", 10); p.samples("d1", 10, 10); p.finish("d1", "ok")
>>> p.summary()["devices"]["d1"]["jobs_ok"]
1
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.fsutil import atomic_write_text, dumps_json

FARM_FILE = "farm.json"


class FarmProgress:
    """Live per-device lines and the farm summary (thread-safe)."""

    def __init__(self, devices: Iterable[str], enabled: bool = True, echo: Callable[[str], None] = lambda s: None):
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._echo = echo
        self._devices: dict[str, dict[str, Any]] = {}
        self._bars: dict[str, Any] = {}
        self._retries: list[dict] = []
        self._drained: dict[str, str] = {}
        self._leases_broken: list[dict] = []
        self._enabled = enabled
        self._tqdm = tqdm
        for name in devices:
            self.add_device(name)

    def add_device(self, name: str) -> None:
        """A device line (also for a device that joins mid-run)."""
        with self._lock:
            if name in self._devices:
                return
            self._devices[name] = {"job": None, "done": 0, "total": 0, "samples_per_s": None,
                                   "jobs_ok": 0, "jobs_failed": 0, "device_errors": 0, "state": "idle"}
            self._bars[name] = self._tqdm(total=0, desc=name, unit="smp", position=len(self._bars),
                                          disable=not self._enabled, leave=False)

    def start(self, name: str, job: str, total: int) -> None:
        with self._lock:
            line = self._devices[name]
            line.update(job=job, done=0, total=total, state="running", started=time.monotonic())
            bar = self._bars[name]
            bar.reset(total=total)
            bar.set_description_str(f"{name}: {job}")

    def samples(self, name: str, done: int, total: int) -> None:
        with self._lock:
            line = self._devices[name]
            elapsed = time.monotonic() - line.get("started", time.monotonic())
            line.update(done=done, total=total, samples_per_s=round(done / elapsed, 1) if elapsed > 0 else None)
            bar = self._bars[name]
            bar.n = done
            bar.set_postfix_str(f"{line['samples_per_s'] or 0:.0f} smp/s", refresh=True)

    def finish(self, name: str, status: str) -> None:
        """The device's job ended: "ok", "failed" (model reason) or "device error"."""
        with self._lock:
            line = self._devices[name]
            key = {"ok": "jobs_ok", "failed": "jobs_failed"}.get(status, "device_errors")
            line[key] += 1
            line["state"] = "idle" if status != "device error" else "device error"

    def retry(self, name: str, job: str, error: str) -> None:
        with self._lock:
            self._retries.append({"device": name, "job": job, "error": error})

    def drained(self, name: str, why: str) -> None:
        with self._lock:
            self._drained[name] = why
            if name in self._devices:
                self._devices[name]["state"] = "drained"
        self._echo(f"device {name}: drained for the rest of the run ({why})")

    def lease_broken(self, key: str, holder: str) -> None:
        with self._lock:
            self._leases_broken.append({"key": key, "holder": holder})

    def summary(self) -> dict[str, Any]:
        with self._lock:
            devices = {n: {k: v for k, v in line.items() if k != "started"} for n, line in self._devices.items()}
            return {"devices": devices, "retries": list(self._retries), "drained": dict(self._drained),
                    "leases_broken": list(self._leases_broken)}

    def close(self, run_dir: Path | None = None) -> dict[str, Any]:
        """Close the live lines, print the summary and write it to ``run_dir/farm.json``."""
        for bar in self._bars.values():
            bar.close()
        summary = self.summary()
        if len(summary["devices"]) > 1 or summary["retries"] or summary["drained"] or summary["leases_broken"]:
            for line in summary_lines(summary):
                self._echo(line)
        if run_dir is not None:
            atomic_write_text(Path(run_dir) / FARM_FILE, dumps_json(summary))
        return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The farm summary as text: a line per device, then retries, drained devices, broken leases."""
    lines = ["farm: " + ", ".join(f"{n} {d['jobs_ok']} ok/{d['jobs_failed']} failed/{d['device_errors']} "
                                  f"device errors" for n, d in summary["devices"].items())]
    lines.append(f"farm: {len(summary['retries'])} retries, {len(summary['drained'])} drained device(s)"
                 + "".join(f"; {n} ({why})" for n, why in summary["drained"].items())
                 + f", {len(summary['leases_broken'])} lease(s) broken")
    return lines
