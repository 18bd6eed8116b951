"""A simulated Android device that speaks the real ADB wire protocol on loopback TCP.

Debian's ``adb`` (29.0.6) and the ``adb-shell`` library connect to it exactly as to a phone in
``adb tcpip`` mode: CNXN, optional RSA AUTH, OPEN/OKAY/WRTE/CLSE streams, and the services
``shell:`` (v1), ``shell,v2,...:`` (shell protocol v2, exit codes), ``exec:`` and ``sync:``
(STAT/STA2/LST2, LIST/LIS2, SEND, RECV, QUIT). Shell commands run with ``sh -c`` confined to a
folder ``root`` that plays the device's file system: a private mount namespace and a chroot in
which ``/`` is ``root`` (``sandbox``, ``host_root``; with a board, the board's root).

It is a shell on this machine as this user, so it is locked by default: RSA authentication against
a ``trusted_keys`` file (``sandbox.DeviceSandbox``), on loopback. ``host`` may name another address
only with ``auth`` on and ``accept_new_keys`` off; otherwise it refuses to start.

File system: as on a phone, ``/data/local/tmp`` (host ``<root>/data/local/tmp``) is the only
writable place; sync serves only it, and refuses with "Permission denied" a path that resolves
(``..``, symlinks) outside it. The harness's work folder is ``/data/local/tmp/qskew``. Shells start
in /data/local/tmp with a PATH starting with ``/system/bin``, which holds ``python3``/``python``
(the configured interpreter, mounted read-only with its libraries) and a ``getprop`` that answers
model, ABI and serial. Only the device's own processes are in its ``/proc``.

The parts, each importing only those below it::

    simulator   SimulatedDevice: listen, accept, start/stop, vanish, drop_connections
    connection  one client link: CNXN, AUTH, OPEN/OKAY/WRTE/CLSE routing
    services    shell:, shell,v2:, exec: (and lookup)  --  sync  sync: (STAT, LIST, SEND, RECV)
    sandbox     DeviceSandbox: identity, keys, sandbox folder, shell processes, faults, threads
    streams     Stream (one OPENed stream, one WRTE in flight) and Closed

Threads: one accept thread, one reader thread per connection, one thread per running service (plus
one for stderr and one for stdin of a shell).

>>> import tempfile, pathlib
>>> with SimulatedDevice(pathlib.Path(tempfile.mkdtemp())) as dev:   # doctest: +SKIP
...     print(dev.address)                                           # ('127.0.0.1', 40123)
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

from harness.targets.simulate.connection import Connection, shutdown_quietly
from harness.targets.simulate.sandbox import DEFAULT_FEATURES, DeviceSandbox, host_abi

__all__ = ["DEFAULT_FEATURES", "EMULATOR_PORTS", "LOOPBACK_HOST", "SimulatedDevice", "check_listen_address", "host_abi",
           "is_loopback"]

log = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"  # where a simulated device listens unless told otherwise
EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these as emulators (transport_local.cpp)
LISTEN_BACKLOG = 16  # pending connects; a handful of clients at most


class SimulatedDevice(DeviceSandbox):
    """An ADB device on ``host`` (loopback by default); see the module docstring for what it speaks
    and where its files live.

    Options other than ``host`` and ``port`` are those of ``sandbox.DeviceSandbox`` (auth and
    trusted keys, maxdata, features, python, serial, model, abi, disk quota).
    """

    def __init__(self, root: Path, *, host: str = LOOPBACK_HOST, port: int = 0, **options):
        check_listen_address(host, port, options.get("auth", True), options.get("accept_new_keys", False))
        super().__init__(root, **options)
        self._host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()

    def start(self) -> "SimulatedDevice":
        """Prepare the sandbox, bind and serve on background threads; returns self."""
        if self._listener is not None:
            raise RuntimeError(f"simulated device {self.serial} is already started")
        self._prepare_root()
        self.shell.start()  # one confined device for its lifetime: its shells share its processes
        listener = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
            listener.listen(LISTEN_BACKLOG)
        except OSError:
            listener.close()
            self.shell.stop()
            raise
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._stopped.clear()
        self.spawn_thread(self._accept_loop, f"adb-sim-accept-{self._port}")
        log.info("[%s] listening on %s:%d (root %s, auth %s)", self.serial, self._host, self._port, self.root,
                 "off" if not self.auth else "any new key" if self.accept_new_keys else f"keys in {self.trusted_keys}")
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the device listens on."""
        return self._host, self._port

    def stop(self) -> None:
        """Stop listening, close every connection, kill running shell processes. Idempotent."""
        self._stopped.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            shutdown_quietly(listener)
            listener.close()
        self.drop_connections()
        self._kill_processes()
        self.shell.stop()
        self._join_threads()

    def vanish(self) -> None:
        """The device disappears: like ``stop()``; later connects are refused."""
        log.info("[%s] vanishing", self.serial)
        self.stop()

    def drop_connections(self) -> None:
        """Cut every client link now (RST) but keep listening and keep shell processes running."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.abort()

    def __enter__(self) -> "SimulatedDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopped.is_set():
            try:
                sock, peer = listener.accept()
            except OSError:
                return
            if self._stopped.is_set():
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, f"{peer[0]}:{peer[1]}", on_close=self._forget_connection)
            with self._lock:
                self._connections.add(conn)
            self.spawn_thread(conn.run, f"adb-sim-conn-{peer[1]}")

    def _forget_connection(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)


def check_listen_address(host: str, port: int, auth: bool = True, accept_new_keys: bool = False) -> None:
    """ValueError for a port the adb server would take for an emulator, or a non-loopback ``host``
    without auth (or with ``accept_new_keys``, which lets any key in)."""
    if not is_loopback(host) and (not auth or accept_new_keys):
        raise ValueError(f"a simulated device on {host!r} (not loopback) is reachable by others: it "
                         "refuses to start without auth or with accept_new_keys")
    if port in EMULATOR_PORTS:
        raise ValueError(f"port {port} is in 5555-5585, which the adb server probes as emulators; "
                         "use another port (0 picks a free one)")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can reach it).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
