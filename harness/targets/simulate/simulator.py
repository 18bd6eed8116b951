"""A simulated Android device that speaks the real ADB wire protocol on loopback TCP.

Debian's ``adb`` (29.0.6) and the ``adb-shell`` library connect to it exactly as to a phone in
``adb tcpip`` mode: CNXN, optional RSA AUTH, OPEN/OKAY/WRTE/CLSE streams, and the services
``shell:`` (v1), ``shell,v2,...:`` (shell protocol v2, exit codes), ``exec:`` and ``sync:``
(STAT/STA2/LST2, LIST/LIS2, SEND, RECV, QUIT). Shell commands run with ``sh -c`` on this machine,
inside a sandbox folder ``root`` that plays the device's file system.

File system: device paths ARE host absolute paths inside ``root`` (identity mapping); sync requests
for paths that resolve (``..``, symlinks) outside ``root`` are refused with "Permission denied".
The harness's work folder on a simulated device is ``<root>/data/local/tmp/qskew``. Shells run with
cwd ``root`` and a PATH starting with ``<root>/system/bin``, which holds ``python3``/``python``
(the configured interpreter) and a ``getprop`` that answers model, ABI and serial.

Threads: one accept thread, one reader thread per connection, one thread per running service (plus
one for stderr and one for stdin of a shell). Protocol rules kept (``devices-and-adb.md`` §8):
real checksums sent, none verified; magic checked; maxdata honoured both ways; a host WRTE is
acknowledged before any reply on that stream; at most one unacknowledged WRTE per stream; CLSE on a
live stream is echoed; unknown services are refused with CLSE(0, id); never STLS.

>>> import tempfile, pathlib
>>> with SimulatedDevice(pathlib.Path(tempfile.mkdtemp())) as dev:   # doctest: +SKIP
...     print(dev.address)                                           # ('127.0.0.1', 40123)
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from harness.targets.simulate import auth as adb_auth
from harness.targets import adb_wire as wire
from harness.targets.adb_wire import A_AUTH, A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE

log = logging.getLogger(__name__)

DEFAULT_FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")
FORBIDDEN_FEATURES = ("delayed_ack", "sendrecv_v2")  # change the wire format; not implemented
LOOPBACK_HOST = "127.0.0.1"  # the only address a simulated device listens on
EMULATOR_PORTS = range(5555, 5586)  # the adb server probes these as emulators (transport_local.cpp)
LISTEN_BACKLOG = 16  # pending connects; a handful of clients at most
JOIN_TIMEOUT_S = 2.0  # how long stop() waits for service threads to notice the closed sockets
RUN_FAULT_MARKER = "device_runner"  # vanish_after("run") fires on a shell command containing this
RUN_FAULT_DELAY_S = 0.5  # ... once that command has been running this long
SDK_VERSION = "34"  # ro.build.version.sdk reported by getprop
BUILD_RELEASE = "qskew-sim"  # ro.build.version.release
PROCESS_TOKEN_VAR = "QSKEW_SIM_TOKEN"  # env var marking processes started by one device instance
SHELL_PATH_TAIL = "/usr/local/bin:/usr/bin:/bin"  # host tools (sh, mkdir, sha256sum) after system/bin
FAULT_STAGES = ("push", "pull", "run")
_ABI_BY_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a",
                   "armv7l": "armeabi-v7a", "armv8l": "armeabi-v7a", "i686": "x86", "i386": "x86"}
_BANNER_FORBIDDEN = set(":;=,\n\r\0")  # would break the CNXN banner (split on ':' ';' '=' ',')


def host_abi() -> str:
    """The Android ABI name of this machine (x86_64, arm64-v8a, ...)."""
    machine = platform.machine().lower()
    return _ABI_BY_MACHINE.get(machine, machine)


class _Closed(Exception):
    """A stream or connection is gone; the service or reader stops quietly."""


class SimulatedDevice:
    """A loopback ADB device; see the module docstring for what it speaks and where its files live."""

    def __init__(self, root: Path, *, host: str = LOOPBACK_HOST, port: int = 0, auth: bool = False,
                 trusted_keys: Path | None = None, accept_new_keys: bool = True,
                 max_payload: int = wire.MAX_PAYLOAD, features: Sequence[str] = DEFAULT_FEATURES,
                 python: str | None = None, serial: str = "qskew-sim", model: str = "qskew simulated device",
                 abi: str | None = None, disk_quota_bytes: int | None = None):
        if host != LOOPBACK_HOST:
            raise ValueError(f"a simulated device listens on {LOOPBACK_HOST} only, not {host!r}")
        if port in EMULATOR_PORTS:
            raise ValueError(f"port {port} is in 5555-5585, which the adb server probes as emulators; "
                             "use another port (0 picks a free one)")
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        if not wire.MAX_PAYLOAD_V1 <= max_payload <= wire.MAX_PAYLOAD:
            raise ValueError(f"max_payload {max_payload} must be between {wire.MAX_PAYLOAD_V1} and {wire.MAX_PAYLOAD}")
        self.features = tuple(features)
        for name, value in [("serial", serial), ("model", model), *(("feature", f) for f in self.features)]:
            if not value or set(value) & _BANNER_FORBIDDEN:
                raise ValueError(f"{name} {value!r} must be non-empty without any of : ; = , or newlines")
        bad = sorted(set(self.features) & set(FORBIDDEN_FEATURES))
        if bad:
            raise ValueError(f"features {bad} change the wire format and are not simulated")
        if disk_quota_bytes is not None and disk_quota_bytes < 0:
            raise ValueError("disk_quota_bytes must be >= 0")
        self.root = Path(os.path.realpath(root))
        self._port = port
        self.auth = auth
        self.trusted_keys = None if trusted_keys is None else Path(trusted_keys)
        self.accept_new_keys = accept_new_keys
        self.max_payload = max_payload
        self.python = python or sys.executable
        self._serial = serial
        self.model = model
        self.abi = abi or host_abi()
        self.disk_quota_bytes = disk_quota_bytes
        self._accepted_keys: list = []  # keys accepted this session (also appended to trusted_keys)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._processes: dict[int, subprocess.Popen] = {}  # running shells: pid (= process group id) -> process
        self._token = secrets.token_hex(8)  # in every device shell's environment: finds strays at stop()
        self._stopped = threading.Event()
        self._fault: tuple[str, int] | None = None
        self._fault_count = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "SimulatedDevice":
        """Prepare the sandbox, bind and serve on background threads; returns self."""
        if self._listener is not None:
            raise RuntimeError(f"simulated device {self._serial} is already started")
        self._prepare_root()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((LOOPBACK_HOST, self._port))
            listener.listen(LISTEN_BACKLOG)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._stopped.clear()
        self._spawn_thread(self._accept_loop, f"adb-sim-accept-{self._port}")
        log.info("[%s] listening on %s:%d (root %s)", self._serial, LOOPBACK_HOST, self._port, self.root)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the device listens on."""
        return LOOPBACK_HOST, self._port

    @property
    def serial(self) -> str:
        """The device's ro.serialno (adb itself names TCP devices ``127.0.0.1:<port>``)."""
        return self._serial

    def stop(self) -> None:
        """Stop listening, close every connection, kill running shell processes. Idempotent."""
        self._stopped.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown_quietly(listener)
            listener.close()
        self.drop_connections()
        self._kill_processes()
        self._join_threads()

    def vanish(self) -> None:
        """The device disappears: like ``stop()``; later connects are refused."""
        log.info("[%s] vanishing", self._serial)
        self.stop()

    def drop_connections(self) -> None:
        """Cut every client link now (RST) but keep listening and keep shell processes running."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.abort()

    def vanish_after(self, stage: str, nbytes: int = 0) -> None:
        """Arm a fault: vanish after ``nbytes`` of SEND DATA received ("push"), of RECV DATA sent
        ("pull"), or when a shell command containing ``device_runner`` has run 0.5 s ("run")."""
        if stage not in FAULT_STAGES:
            raise ValueError(f"unknown fault stage {stage!r}; known: {', '.join(FAULT_STAGES)}")
        with self._lock:
            self._fault = (stage, max(0, int(nbytes)))
            self._fault_count = 0

    def __enter__(self) -> "SimulatedDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- used by connections and services ----------------------------------------------------

    def banner(self) -> bytes:
        """The CNXN payload: ``device::ro.product.name=..;ro.product.model=..;...;features=..``."""
        text = (f"device::ro.product.name={self.product_name};ro.product.model={self.model};"
                f"ro.product.device={self.product_name};features={','.join(self.features)}")
        return text.encode()

    @property
    def product_name(self) -> str:
        return "qskew_sim"

    def properties(self) -> dict[str, str]:
        """What ``getprop`` answers on this device."""
        return {"ro.product.model": self.model, "ro.product.name": self.product_name,
                "ro.product.device": self.product_name, "ro.product.manufacturer": "qskew",
                "ro.product.cpu.abi": self.abi, "ro.product.cpu.abilist": self.abi,
                "ro.serialno": self._serial, "ro.build.version.release": BUILD_RELEASE,
                "ro.build.version.sdk": SDK_VERSION}

    def trusted(self) -> list:
        """Public keys this device accepts signatures from."""
        keys = list(self._accepted_keys)
        if self.trusted_keys is not None:
            keys += adb_auth.load_trusted_keys(self.trusted_keys)
        return keys

    def offer_public_key(self, payload: bytes) -> bool:
        """The host sent its public key (AUTH RSAPUBLICKEY): True if the device now trusts it."""
        try:
            key = adb_auth.decode_android_pubkey(payload)
        except adb_auth.KeyFormatError as exc:
            log.warning("[%s] ignoring malformed public key: %s", self._serial, exc)
            return False
        known = {adb_auth.key_id(k) for k in self.trusted()}
        if adb_auth.key_id(key) in known:
            return True
        if not self.accept_new_keys:
            log.info("[%s] refusing unknown public key (accept_new_keys is off)", self._serial)
            return False
        with self._lock:
            self._accepted_keys.append(key)
            if self.trusted_keys is not None:
                with open(self.trusted_keys, "ab") as fh:
                    fh.write(payload.rstrip(b"\0").strip() + b"\n")
        log.info("[%s] accepted a new public key", self._serial)
        return True

    def shell_env(self) -> dict[str, str]:
        """Environment of device shells: PATH starts with <root>/system/bin."""
        tmp = self.root / "data" / "local" / "tmp"
        return {"PATH": f"{self.root / 'system' / 'bin'}:{SHELL_PATH_TAIL}", "HOME": str(self.root),
                "TMPDIR": str(tmp), "SHELL": "/bin/sh", "ANDROID_SERIAL": self._serial,
                "LANG": "C.UTF-8", PROCESS_TOKEN_VAR: self._token}

    def spawn_shell(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        """Start ``sh -c command`` in its own process group inside the sandbox."""
        proc = subprocess.Popen(["sh", "-c", command], cwd=self.root, env=self.shell_env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                start_new_session=True)
        with self._lock:
            for pid in [pid for pid, p in self._processes.items() if p.poll() is not None]:
                del self._processes[pid]  # reaped: its pid (and group id) may be reused by anyone
            self._processes[proc.pid] = proc
            fault = self._fault
        if self._stopped.is_set():  # raced with stop(): do not leave it running
            _killpg(proc.pid)
        if fault and fault[0] == "run" and RUN_FAULT_MARKER in command:
            timer = threading.Timer(RUN_FAULT_DELAY_S, self._run_fault, args=(proc,))
            timer.daemon = True
            timer.start()
        return proc

    def fault_due(self, stage: str, nbytes: int) -> bool:
        """Count ``nbytes`` moved in a push or pull; True (fault disarmed) when the armed
        ``vanish_after`` threshold is reached. The caller flushes what it sent, then calls vanish()."""
        with self._lock:
            if not self._fault or self._fault[0] != stage:
                return False
            self._fault_count += nbytes
            if self._fault_count < self._fault[1]:
                return False
            self._fault = None
        log.info("[%s] fault: vanishing during %s", self._serial, stage)
        return True

    def spawn_thread(self, target, name: str, *args) -> threading.Thread:
        return self._spawn_thread(target, name, *args)

    def forget_connection(self, conn: "_Connection") -> None:
        with self._lock:
            self._connections.discard(conn)

    # --- internals ---------------------------------------------------------------------------

    def _prepare_root(self) -> None:
        bin_dir = self.root / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        # Wrapper scripts rather than symlinks: a venv's python only finds its site-packages
        # when started through its own path (pyvenv.cfg is looked up next to argv[0]).
        launcher = f"#!/bin/sh\nexec {shlex.quote(self.python)} \"$@\"\n"
        for name in ("python3", "python"):
            _write_executable(bin_dir / name, launcher)
        _write_executable(bin_dir / "getprop", _getprop_script(self.properties()))

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
            conn = _Connection(self, sock, f"{peer[0]}:{peer[1]}")
            with self._lock:
                self._connections.add(conn)
            self._spawn_thread(conn.run, f"adb-sim-conn-{peer[1]}")

    def _spawn_thread(self, target, name: str, *args) -> threading.Thread:
        def body():
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _run_fault(self, proc: subprocess.Popen) -> None:
        if proc.poll() is not None and not self._marked_process_alive():
            return  # finished (a detached runner started by this command counts as still running)
        with self._lock:
            if not self._fault or self._fault[0] != "run":
                return
            self._fault = None
        log.info("[%s] fault: vanishing while the runner runs", self._serial)
        self.vanish()

    def _marked_process_alive(self) -> bool:
        """Whether a process of this device with RUN_FAULT_MARKER in its command line still runs."""
        for pid in _pids_with_env(f"{PROCESS_TOKEN_VAR}={self._token}".encode()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if RUN_FAULT_MARKER.encode() in fh.read():
                        return True
            except OSError:
                continue
        return False

    def _kill_processes(self) -> None:
        """SIGKILL the process group of every running shell, then any process left behind
        (``cmd &``, ``setsid``) that still carries this device's token in its environment."""
        with self._lock:
            procs = [p for p in self._processes.values() if p.poll() is None]
            self._processes.clear()
        for proc in procs:
            _killpg(proc.pid)  # the leader is not reaped yet, so the group id is still ours
        for pid in _pids_with_env(f"{PROCESS_TOKEN_VAR}={self._token}".encode()):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in procs:
            try:
                proc.wait(timeout=JOIN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("[%s] shell process %d did not die", self._serial, proc.pid)

    def _join_threads(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        with self._lock:
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Stream:
    """One OPENed service stream: inbound byte buffer, outbound WRTEs with one in flight."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._cond = threading.Condition()
        self._inbox = bytearray()
        self._input_closed = False
        self._awaiting_ack = False
        self._closed = False  # no more output may be sent
        self._write_lock = threading.Lock()  # one writer at a time (whole shell-v2 packets)

    @property
    def closed(self) -> bool:
        return self._closed

    # Called by the connection's reader thread.
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def acknowledged(self) -> None:
        with self._cond:
            self._awaiting_ack = False
            self._cond.notify_all()

    def shutdown(self) -> None:
        """The host closed the stream or the link died: wake every waiter; output is discarded."""
        with self._cond:
            self._closed = True
            self._input_closed = True
            self._cond.notify_all()

    # Called by service threads.
    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` inbound bytes; raises _Closed if the stream ends first."""
        with self._cond:
            while len(self._inbox) < n and not self._input_closed:
                self._cond.wait()
            if len(self._inbox) < n:
                raise _Closed
            data = bytes(self._inbox[:n])
            del self._inbox[:n]
            return data

    def read_some(self) -> bytes:
        """Whatever inbound bytes are buffered (waiting for some); b"" at end of stream."""
        with self._cond:
            while not self._inbox and not self._input_closed:
                self._cond.wait()
            data = bytes(self._inbox)
            self._inbox.clear()
            return data

    def buffered(self) -> int:
        with self._cond:
            return len(self._inbox)

    def write(self, data: bytes) -> bool:
        """Send ``data`` as WRTEs of at most the peer's maxdata, each after the previous OKAY.
        Returns False (data dropped) once the stream or link is closed."""
        view = memoryview(data)
        with self._write_lock:
            for start in range(0, len(view), self.conn.maxdata):
                with self._cond:
                    while self._awaiting_ack and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return False
                    self._awaiting_ack = True
                if not self.conn.send(A_WRTE, self.local_id, self.remote_id, view[start:start + self.conn.maxdata]):
                    self.shutdown()
                    return False
        return not self._closed

    def finish(self) -> None:
        """The service is done: wait for the last OKAY, then CLSE (unless the host closed first)."""
        with self._write_lock, self._cond:
            while self._awaiting_ack and not self._closed:
                self._cond.wait()
        if self.conn.unregister(self):
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.shutdown()


class _Connection:
    """One client link: reads messages, answers CNXN/AUTH, routes stream messages."""

    def __init__(self, device: SimulatedDevice, sock: socket.socket, peer: str):
        self.device = device
        self.sock = sock
        self.peer = peer
        self.maxdata = device.max_payload  # min(ours, the host's) once CNXN arrived
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self._online = False
        self._token: bytes | None = None
        self._dead = False

    def run(self) -> None:
        """Reader loop: one message at a time until the link dies or a bad header arrives."""
        try:
            while True:
                header = wire.unpack_header(self._recv_exact(wire.HEADER_SIZE))
                if header.data_length > self.device.max_payload:
                    raise wire.WireError(f"payload of {header.data_length} bytes exceeds maxdata")
                data = self._recv_exact(header.data_length) if header.data_length else b""
                self._dispatch(header, data)
        except wire.WireError as exc:
            log.warning("[%s] dropping %s: %s", self.device.serial, self.peer, exc)
        except (_Closed, OSError):
            pass
        finally:
            self._teardown()

    def send(self, command: int, arg0: int, arg1: int, data: bytes | memoryview = b"") -> bool:
        """Write one message; False if the link is gone."""
        message = wire.pack_message(command, arg0, arg1, bytes(data))
        with self._send_lock:
            if self._dead:
                return False
            try:
                self.sock.sendall(message)
            except OSError:
                self._dead = True
                return False
        return True

    def unregister(self, stream: _Stream) -> bool:
        """Remove a live stream; False if it was already gone (the host closed it)."""
        with self._streams_lock:
            return self._streams.pop(stream.local_id, None) is not None

    def abort(self) -> None:
        """Cut the link at once with a TCP reset (a vanished device, a dropped cable)."""
        self._dead = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # SHUT_RD wakes the reader thread without sending a FIN; its close() then sends the RST.
        # (After a FIN, adb-shell reads b"" in a loop until its read timeout instead of failing.)
        _shutdown_quietly(self.sock, socket.SHUT_RD)
        self._close_streams()

    # --- reading ----------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise _Closed
            got += count
        return bytes(buf)

    def _dispatch(self, header: wire.Header, data: bytes) -> None:
        cmd = header.command
        if cmd == A_CNXN:
            self._on_connect(header, data)
        elif cmd == A_AUTH:
            self._on_auth(header, data)
        elif not self._online:
            return  # nothing but CNXN/AUTH counts before the link is up
        elif cmd == A_OPEN:
            self._on_open(header, data)
        elif cmd == A_WRTE:
            stream = self._find(header.arg1, header.arg0)
            if stream is not None:
                self.send(A_OKAY, stream.local_id, stream.remote_id)  # OKAY first, then the service sees it
                stream.feed(data)
        elif cmd == A_OKAY:
            stream = self._find(header.arg1, header.arg0)
            if stream is not None:
                stream.acknowledged()
        elif cmd == A_CLSE:
            self._on_close(header)

    def _find(self, local_id: int, remote_id: int) -> _Stream | None:
        with self._streams_lock:
            stream = self._streams.get(local_id)
        if stream is None or (remote_id and stream.remote_id != remote_id):
            return None
        return stream

    def _on_connect(self, header: wire.Header, data: bytes) -> None:
        if self._online:  # a second CNXN resets the link, as adbd does
            self._close_streams()
            self._online = False
        self.maxdata = max(wire.MAX_PAYLOAD_V1, min(header.arg1, self.device.max_payload))
        log.debug("[%s] CNXN from %s: version 0x%08x maxdata %d %r", self.device.serial, self.peer,
                  header.arg0, header.arg1, data[:200])
        if self.device.auth:
            self._send_token()
        else:
            self._go_online()

    def _send_token(self) -> None:
        self._token = secrets.token_bytes(wire.TOKEN_SIZE)
        self.send(A_AUTH, wire.AUTH_TOKEN, 0, self._token)

    def _on_auth(self, header: wire.Header, data: bytes) -> None:
        if self._online or self._token is None:
            return
        if header.arg0 == wire.AUTH_SIGNATURE:
            if any(adb_auth.verify_token(key, self._token, data) for key in self.device.trusted()):
                self._go_online()
            else:
                self._send_token()  # adbd: a fresh token, the host tries its next key
        elif header.arg0 == wire.AUTH_RSAPUBLICKEY:
            if self.device.offer_public_key(data):
                self._go_online()
            # else: like an unanswered "Allow USB debugging?" dialog, the host waits in vain

    def _go_online(self) -> None:
        self._online = True
        self._token = None
        self.send(A_CNXN, A_VERSION, self.maxdata, self.device.banner())

    def _on_open(self, header: wire.Header, data: bytes) -> None:
        from harness.targets.simulate import services

        if header.arg0 == 0:
            return
        name = data.rstrip(b"\0").decode("utf-8", errors="surrogateescape")
        service = services.lookup(self.device, name)
        if service is None:
            log.info("[%s] refusing service %r", self.device.serial, name[:80])
            self.send(A_CLSE, 0, header.arg0)
            return
        with self._streams_lock:
            local_id = self._next_id
            self._next_id = self._next_id % 0x7FFFFFFF + 1
            stream = _Stream(self, local_id, header.arg0)
            self._streams[local_id] = stream
        self.send(A_OKAY, local_id, header.arg0)
        self.device.spawn_thread(self._serve, f"adb-sim-svc-{local_id}", service, stream)

    def _serve(self, service, stream: _Stream) -> None:
        try:
            service(stream)
        except _Closed:
            pass
        except Exception:  # a bug in a service must not take the device down
            log.exception("[%s] service failed", self.device.serial)
        finally:
            stream.finish()

    def _on_close(self, header: wire.Header) -> None:
        stream = self._find(header.arg1, header.arg0)
        if stream is None or not self.unregister(stream):
            return  # unknown stream: ignoring it ends the echo
        stream.shutdown()
        self.send(A_CLSE, stream.local_id, stream.remote_id)

    def _close_streams(self) -> None:
        with self._streams_lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream.shutdown()

    def _teardown(self) -> None:
        self._dead = True
        self._close_streams()
        try:
            self.sock.close()
        except OSError:
            pass
        self.device.forget_connection(self)


def _getprop_script(props: dict[str, str]) -> str:
    """A POSIX sh ``getprop``: ``getprop KEY [DEFAULT]``, or every ``[key]: [value]`` without args."""
    listing = "\n".join(f"  printf '%s\\n' {shlex.quote(f'[{k}]: [{v}]')}" for k, v in sorted(props.items()))
    cases = "\n".join(f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;" for k, v in sorted(props.items()))
    return ("#!/bin/sh\n# getprop of a qskew simulated device\n"
            f"if [ $# -eq 0 ]; then\n{listing}\n  exit 0\nfi\n"
            f"case \"$1\" in\n{cases}\n  *) printf '%s\\n' \"${{2-}}\" ;;\nesac\n")


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def _pids_with_env(entry: bytes) -> list[int]:
    """Processes of this user whose environment holds ``entry`` (Linux /proc; [] elsewhere)."""
    found = []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if entry in fh.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _shutdown_quietly(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
