"""Following an adb server's device list while a sweep runs (hot-plug, ``harness.farm.hotplug``).

>>> tracker = DeviceTracker("127.0.0.1:5037", lambda ready: print(sorted(ready)))   # doctest: +SKIP
>>> tracker.stop()                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

from adbutils.errors import AdbError

from harness.errors import TargetError
from harness.targets.adb_server import (LINK_ERRORS, SERVER_PROBE_TIMEOUT_S, parse_server, server_client,
                                        server_devices)
from harness.targets.adb_session import bare

log = logging.getLogger(__name__)
TRACK_POLL_S = 1.0  # the device list is also polled this often (DeviceTracker says why)


class DeviceTracker:
    """The adb server's device list, followed, as calls of ``on_change(ready serials)``.

    ``host:track-devices`` makes the server send its whole list whenever a device comes or goes;
    but Debian's adb does not send one when an ``adb connect``ed device falls to ``offline``, so
    the list is also asked for every ``TRACK_POLL_S``. ``on_change`` gets the serials in state
    ``device`` each time that set changes (the first call is the set at start). Both readers are
    daemon threads, stopped by :meth:`stop`; if the server goes away, ``error`` says why.
    """

    def __init__(self, server: str, on_change: Callable[[frozenset[str]], None]):
        self.server = "%s:%d" % parse_server(server)
        self.error: str = ""
        self._on_change = on_change
        self._last: frozenset[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client = server_client(self.server)
        try:
            conn = self._client.make_connection(timeout=SERVER_PROBE_TIMEOUT_S)
            conn.send_command("host:track-devices")
            conn.check_okay()
            conn.conn.settimeout(None)  # events come whenever a device does: wait without a deadline
        except LINK_ERRORS as exc:
            raise TargetError(f"track-devices on the adb server at {self.server}: {bare(exc)}", self.server) from exc
        self._conn = conn
        self._threads = [threading.Thread(target=self._read, name=f"qskew-track-{self.server}", daemon=True),
                         threading.Thread(target=self._poll, name=f"qskew-poll-{self.server}", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _report(self, ready: frozenset[str]) -> None:
        with self._lock:
            if ready == self._last or self._stop.is_set():
                return
            self._last = ready
            self._on_change(ready)

    def _read(self) -> None:
        try:
            while True:
                listing = self._conn.read_string_block()
                self._report(frozenset(line.split("\t", 1)[0] for line in listing.splitlines()
                                       if line.strip().endswith("\tdevice")))
        except (*LINK_ERRORS, ValueError) as exc:
            self._failed(exc)

    def _poll(self) -> None:
        while not self._stop.wait(TRACK_POLL_S):
            try:
                self._report(frozenset(d.serial for d in server_devices(self._client) if d.state == "device"))
            except (*LINK_ERRORS, TargetError) as exc:
                self._failed(exc)
                return

    def _failed(self, exc: BaseException) -> None:
        if not self._stop.is_set():
            self.error = f"following the adb server at {self.server}: {bare(exc)}"
            log.warning("%s", self.error)

    def stop(self) -> None:
        """Stop following the server (closes the track-devices connection)."""
        self._stop.set()
        try:
            self._conn.conn.shutdown(socket.SHUT_RDWR)
        except (OSError, AdbError):
            pass
        for thread in self._threads:
            thread.join(timeout=SERVER_PROBE_TIMEOUT_S + TRACK_POLL_S)
