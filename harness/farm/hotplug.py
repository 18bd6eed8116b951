"""Hot-plug for devices reached through an adb server: devices leave and join while the sweep runs.

For every adb server behind a selected device (``reach = "adb-server"``), a
:class:`harness.targets.adb_server.DeviceTracker` follows ``track-devices``:

* a device whose serial leaves the server's ready list (unplugged, offline, rebooting) is drained
  at once: it takes no new job, and the job it runs fails for a device reason (in a pool it moves
  on to another member; a lone device's remaining jobs are left unrun and reported);
* a serial that appears and reports the same model and ABI as a pool's members joins that pool
  (a copy of a member's inventory entry with the new serial, named ``<pool>+<serial>``) and its
  own worker thread starts taking the pool's jobs.

>>> watch = HotPlug.start(groups, queues, farm, work, echo)    # doctest: +SKIP
>>> ...; errors = watch.stop()                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable, Mapping

from harness.errors import QskewError
from harness.farm.connect import open_target
from harness.farm.job import OpenDevice
from harness.logs import job_logger

log = logging.getLogger(__name__)
MATCH_FACTS = ("model", "abi")  # what a new device must share with a pool's members to join it


class HotPlug:
    """Watches the adb servers of a sweep's devices; drains vanished ones, adds newcomers to pools."""

    def __init__(self, groups: Mapping[str, list], queues: Mapping[str, Any], farm, work: Callable, echo):
        self._groups = {name: list(members) for name, members in groups.items()}
        self._queues, self._farm, self._work, self._echo = queues, farm, work, echo
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._joined: list[Any] = []
        self._trackers: list[Any] = []

    @classmethod
    def start(cls, groups, queues, farm, work, echo) -> "HotPlug | None":
        """Watch every adb server behind a selected device; None when no device is behind one."""
        servers = {_server(dev.spec) for members in groups.values() for dev in members
                   if dev.spec.reach == "adb-server"}
        if not servers:
            return None
        from harness.targets.adb_track import DeviceTracker

        watch = cls(groups, queues, farm, work, echo)
        for server in sorted(servers):
            try:
                watch._trackers.append(DeviceTracker(server, lambda ready, s=server: watch._changed(s, ready)))
            except QskewError as err:
                echo(f"hot-plug: cannot follow the adb server at {server}: {err}")
        return watch

    def _changed(self, server: str, ready: frozenset[str]) -> None:
        with self._lock:
            for pool, members in self._groups.items():
                ours = [d for d in members if d.spec.reach == "adb-server" and _server(d.spec) == server]
                for dev in ours:
                    if dev.spec.serial not in ready and dev.spec.name in self._queues[pool].live():
                        self._queues[pool].drain(dev.spec.name, f"disappeared from the adb server at {server}")
                        self._farm.drained(dev.spec.name, f"disappeared from the adb server at {server}")
                if not ours or not ours[0].spec.pool:
                    continue  # only a pool takes newcomers
                known = {d.spec.serial for d in ours}
                for serial in sorted(ready - known):
                    self._try_join(pool, ours[0], serial)

    def _try_join(self, pool: str, model_dev, serial: str) -> None:
        spec = dataclasses.replace(model_dev.spec, name=f"{pool}+{serial}", serial=serial)
        try:
            target = open_target(spec)
            props = dict(target.properties())
        except QskewError as err:
            self._echo(f"hot-plug: {serial} appeared but cannot be reached: {err}")
            return
        want = {k: model_dev.properties.get(k) for k in MATCH_FACTS}
        if {k: props.get(k) for k in MATCH_FACTS} != want:
            target.close()
            self._groups[pool].append(_Stranger(spec))  # not asked again
            return
        dev = OpenDevice(spec, target, props)
        self._groups[pool].append(dev)
        self._joined.append(dev)
        self._farm.add_device(spec.name)
        self._queues[pool].join(spec.name, lambda job: spec.offers(job.delegate))
        self._echo(f"hot-plug: {serial} ({props.get('model')}, {props.get('abi')}) joined pool {pool}")
        job_logger(log, spec.name).info("joined pool %s", pool)
        thread = threading.Thread(target=self._run, args=(dev,), name=f"qskew-device-{spec.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self, dev) -> None:
        try:
            self._work(dev)
        except QskewError as err:
            with self._lock:
                self._errors.append((dev.spec.name, err))

    def stop(self) -> list[tuple[str, BaseException]]:
        """Stop following the servers, wait for the joined devices' workers, close their targets;
        returns the errors those workers raised."""
        for tracker in self._trackers:
            tracker.stop()
        for thread in list(self._threads):
            thread.join()
        for dev in self._joined:
            dev.target.close()
        return list(self._errors)


@dataclasses.dataclass(frozen=True)
class _Stranger:
    """A device that appeared on a pool's server but is not like its members (kept to skip it)."""

    spec: Any
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _server(spec) -> str:
    from harness.targets.adb_server import DEFAULT_SERVER

    return spec.server or DEFAULT_SERVER
