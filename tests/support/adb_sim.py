"""Test helpers around the simulated ADB device: adb-shell with TCP_NODELAY, Debian's real ``adb``
on a private server, and a raw wire-level client for protocol checks.

Used by tests/harness/adb (and usable by any test that needs an ADB client of the simulator).

Simulated devices require ADB authentication, so every client here authenticates like any other:
one RSA key pair per test session (``session_key``), trusted by the devices the fixtures start
(``trusted_keys_file``), used by adb-shell (``adb_shell_device``), the raw client and, installed
as ``~/.android/adbkey`` in a private HOME (``install_test_key``), by Debian's ``adb`` and AdbTarget.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from adb_shell.adb_device import AdbDevice
from adb_shell.transport.tcp_transport import TcpTransport

from harness.targets import adb_wire as wire
from harness.targets.process import CommandResult, run_command

ADB_BINARY = shutil.which("adb") or "/usr/bin/adb"
ADB_TIMEOUT_S = 60.0  # one adb command (a few MB push on a loaded 2-core machine)
DEVICE_ONLINE_TIMEOUT_S = 15.0  # adb connect -> "device" in `adb devices`
RAW_READ_TIMEOUT_S = 5.0  # a raw client waiting for one message
EMULATOR_PORTS = range(5554, 5586)  # never give the adb server one of these
KEY_FILE_MODE = 0o600  # adb and qskew refuse (or fix) a private key others can read
_SESSION_KEY = object()  # adb_shell_device's default: authenticate with the session's test key


@functools.lru_cache(maxsize=None)
def session_key() -> Path:
    """The session's ADB private key (``adbkey``, PKCS#8 PEM, with ``adbkey.pub``), made once."""
    from adb_shell.auth.keygen import keygen

    folder = Path(tempfile.mkdtemp(prefix="qskew-test-adbkey-"))
    atexit.register(shutil.rmtree, folder, True)
    keygen(str(folder / "adbkey"))
    os.chmod(folder / "adbkey", KEY_FILE_MODE)
    return folder / "adbkey"


def session_public_key() -> bytes:
    """The session key's ``adbkey.pub`` line (``<base64> user@host``)."""
    return Path(str(session_key()) + ".pub").read_bytes().strip()


@functools.lru_cache(maxsize=None)
def session_signer():
    """An adb-shell signer for the session key."""
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    return PythonRSASigner(session_public_key().decode(), session_key().read_text())


def trusted_keys_file(folder: Path) -> Path:
    """``folder/adb_keys`` listing the session key: what the fixtures' devices trust."""
    path = Path(folder) / "adb_keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(session_public_key() + b"\n")
    return path


def install_test_key(home: Path) -> Path:
    """Make the session key ``<home>/.android/adbkey`` (what adb and AdbTarget use with HOME=home)."""
    android = Path(home) / ".android"
    android.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(session_key(), android / "adbkey")
    os.chmod(android / "adbkey", KEY_FILE_MODE)
    shutil.copyfile(str(session_key()) + ".pub", android / "adbkey.pub")
    return android / "adbkey"


class NoDelayTcpTransport(TcpTransport):
    """adb-shell's TCP transport with TCP_NODELAY (stock: ~40 ms per small request, Nagle)."""

    def connect(self, transport_timeout_s):
        super().connect(transport_timeout_s)
        self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def adb_shell_device(address: tuple[str, int], rsa_keys=_SESSION_KEY, nodelay: bool = True,
                     **connect_kw) -> AdbDevice:
    """A connected adb-shell AdbDevice for a simulator at ``address``, authenticating with the
    session key unless ``rsa_keys`` says otherwise (None: no key at all)."""
    if rsa_keys is _SESSION_KEY:
        rsa_keys = [session_signer()]
    transport = (NoDelayTcpTransport if nodelay else TcpTransport)(address[0], address[1])
    device = AdbDevice(transport)
    connect_kw.setdefault("read_timeout_s", 10.0)
    device.connect(rsa_keys=rsa_keys, **connect_kw)
    return device


def free_port() -> int:
    """An unused loopback port outside the range the adb server probes as emulators."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in EMULATOR_PORTS:
            return port


class RealAdb:
    """Debian's ``adb`` with a private server port and HOME, through the one process seam."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.server_port = free_port()
        self.env = {"HOME": str(self.home), "ANDROID_ADB_SERVER_PORT": str(self.server_port),
                    "ADB_EMU": "0", "ADB_MDNS": "0", "ADB_USB": "0", "ADB_VENDOR_KEYS": ""}
        install_test_key(self.home)  # adb signs with the session key, which the devices trust

    def __call__(self, *args: str, serial: str | None = None, timeout_s: float = ADB_TIMEOUT_S,
                 stdin_bytes: bytes | None = None) -> CommandResult:
        argv = [ADB_BINARY, "-P", str(self.server_port)] + (["-s", serial] if serial else []) + list(args)
        return run_command(argv, timeout_s=timeout_s, env=self.env, device=serial or "adb", stdin_bytes=stdin_bytes)

    def connect(self, address: tuple[str, int]) -> str:
        """``adb connect`` and wait until ``adb devices`` lists it as ``device``; returns the serial."""
        serial = f"{address[0]}:{address[1]}"
        self("connect", serial)  # its text ("failed to authenticate") is not to be trusted
        deadline = time.monotonic() + DEVICE_ONLINE_TIMEOUT_S
        states = ""
        while time.monotonic() < deadline:
            states = self("devices").stdout
            if f"{serial}\tdevice" in states:
                return serial
            time.sleep(0.1)
        raise AssertionError(f"{serial} never became 'device'; adb devices said:\n{states}")

    def kill_server(self) -> None:
        self("kill-server", timeout_s=20.0)


class RawClient:
    """A wire-level ADB host for protocol checks: send and receive single messages."""

    def __init__(self, address: tuple[str, int], maxdata: int = wire.MAX_PAYLOAD):
        self.sock = socket.create_connection(address, timeout=RAW_READ_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.maxdata = maxdata

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        self.sock.sendall(wire.pack_message(command, arg0, arg1, data))

    def recv(self, timeout_s: float = RAW_READ_TIMEOUT_S) -> tuple[wire.Header, bytes]:
        """One message; asserts the device sent the real checksum and magic."""
        self.sock.settimeout(timeout_s)
        header = wire.unpack_header(self._exact(wire.HEADER_SIZE))
        data = self._exact(header.data_length)
        assert header.data_check == wire.checksum(data), f"{header.name} carries a wrong checksum"
        return header, data

    def connect(self, version: int = wire.A_VERSION, authenticate: bool = True) -> tuple[wire.Header, bytes]:
        """CNXN, then (``authenticate``) sign the device's AUTH token with the session key; the
        device's answer: its CNXN, or the AUTH message when not authenticating."""
        self.send(wire.A_CNXN, version, self.maxdata, b"host::features=shell_v2\0")
        header, data = self.recv()
        if authenticate and header.command == wire.A_AUTH and header.arg0 == wire.AUTH_TOKEN:
            self.send(wire.A_AUTH, wire.AUTH_SIGNATURE, 0, session_signer().Sign(data))
            header, data = self.recv()
        return header, data

    def open(self, local_id: int, service: bytes) -> wire.Header:
        self.send(wire.A_OPEN, local_id, 0, service + b"\0")
        header, _ = self.recv()
        return header

    def closed_by_peer(self, timeout_s: float = RAW_READ_TIMEOUT_S) -> bool:
        """True once the device has closed the connection (EOF or reset) within the timeout."""
        self.sock.settimeout(timeout_s)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("device closed the connection")
            buf += chunk
        return bytes(buf)


def sha256_file(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def when(condition, action, timeout_s: float = 60.0) -> threading.Thread:
    """Run ``action`` on a thread as soon as ``condition()`` holds (a fault timed to a job's state)."""
    def body():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition():
            time.sleep(0.01)
        action()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


WAIT_S = 10.0  # upper bound for anything a simulator test waits for


def wait_until(predicate, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks
        return False


def connect_refused(address: tuple[str, int]) -> bool:
    """True if connecting to ``address`` is refused (a vanished or stopped device)."""
    try:
        adb_shell_device(address)
    except ConnectionRefusedError:
        return True
    return False


def device_path(sim, host_path: str | os.PathLike) -> str:
    """The device path of a host path inside simulated device ``sim``'s root (its ``/``: the
    device is confined, so shells and sync see device paths, never the host's)."""
    rel = os.path.relpath(os.fspath(host_path), os.fspath(sim.root))
    if rel.startswith(".."):
        raise ValueError(f"{host_path} is not inside the device root {sim.root}")
    return "/" + rel


def host_pid(sim, pid: int) -> int | None:
    """The host PID of process ``pid`` as the running confined device ``sim`` numbers it (its own
    PID namespace), or None if no such process runs in the device."""
    init = sim.shell.session.init_pid
    if init is None:
        raise AssertionError("the device is not running: its PIDs cannot be mapped")
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
            if os.readlink(f"/proc/{name}/ns/pid") != namespace:
                continue
        except OSError:
            continue
        nspids = [ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")]
        if nspids and nspids[0] and nspids[0][-1] == str(pid):
            return int(name)
    return None


def device_processes(sim) -> list[int]:
    """Host PIDs of the live processes simulated device ``sim`` started (its token in their env)."""
    from harness.targets.simulate.sandbox import PROCESS_TOKEN_VAR, _pids_with_env

    return [p for p in _pids_with_env(f"{PROCESS_TOKEN_VAR}={sim._token}".encode()) if process_alive(p)]
