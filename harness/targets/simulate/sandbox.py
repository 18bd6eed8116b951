"""The simulated device's state: who it says it is, whom it trusts, its sandbox and its processes.

``DeviceSandbox`` is everything of a simulated device except the network: its identity (serial,
model, ABI, CNXN banner, ``getprop`` answers), its trusted RSA keys, the sandbox folder ``root``
that plays the device's file system, the shell processes it starts there, the faults a test arms
(``vanish_after``) and the threads its services run on. ``simulator.SimulatedDevice`` adds the
listening socket and the connections on top; the services (``services``, ``sync``) see a device
through this class only.

Keys: ``auth`` is on by default and only the public keys listed in the ``trusted_keys`` file
(``adb_keys`` format, one ``<base64> user@host`` per line) may connect. ``accept_new_keys`` (off by
default, logged as a warning) trusts any key a host offers and appends it to the file, which is what
a phone does when someone taps "Allow" and is therefore an open door to anyone who can reach the port.

Sandbox: ``<root>/system/bin`` holds ``python3``/``python`` (the configured interpreter) and a
``getprop`` that answers model, ABI and serial; ``<root>/data/local/tmp`` is the temp folder.
Every shell runs confined (``harness.targets.confine``: a private mount namespace and a chroot)
through ``self.shell.wrap``: without a board ``self.shell`` is a ``host_root.HostShell``, in which
``/`` is ``root`` itself with this host's /usr and the device's Python mounted read-only; with
``board`` (a ``harness.targets.board.device.BoardShell``) the device is an emulated ARM board whose
``/`` is the board root (``<root>/system`` its read-only /system), and ABI, model and the board's
getprop keys come from ``board``. Either way ``<root>/data/local/tmp`` is the device's
/data/local/tmp and the only writable place, device paths map onto the host through
``shell.host_path``, the sync service serves only /data/local/tmp, shells start in
/data/local/tmp with PATH starting with /system/bin, and a token in their environment lets
``stop()`` find the processes they left behind.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from harness.fsutil import atomic_write_text
from harness.targets import adb_wire as wire
from harness.targets.simulate import auth as adb_auth
from harness.targets.simulate.host_root import HostShell

log = logging.getLogger(__name__)

DEFAULT_FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")
FORBIDDEN_FEATURES = ("delayed_ack", "sendrecv_v2")  # change the wire format; not implemented
JOIN_TIMEOUT_S = 2.0  # how long stop() waits for service threads and killed shells to end
RUN_FAULT_MARKER = "device_runner"  # vanish_after("run") fires on a shell command containing this
RUN_FAULT_DELAY_S = 0.5  # ... once that command has been running this long
SDK_VERSION = "34"  # ro.build.version.sdk reported by getprop
BUILD_RELEASE = "qskew-sim"  # ro.build.version.release
DEFAULT_MODEL = "qskew simulated device"  # ro.product.model unless given (or a board's)
PRODUCT_NAME = "qskew_sim"  # ro.product.name and ro.product.device
PROCESS_TOKEN_VAR = "QSKEW_SIM_TOKEN"  # env var marking processes started by one device instance
EXECUTABLE_MODE = 0o755  # the sandbox's python3, python and getprop
FAULT_STAGES = ("push", "pull", "run")
_ABI_BY_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a",
                   "armv7l": "armeabi-v7a", "armv8l": "armeabi-v7a", "i686": "x86", "i386": "x86"}
_BANNER_FORBIDDEN = set(":;=,\n\r\0")  # would break the CNXN banner (split on ':' ';' '=' ',')


def host_abi() -> str:
    """The Android ABI name of this machine (x86_64, arm64-v8a, ...)."""
    machine = platform.machine().lower()
    return _ABI_BY_MACHINE.get(machine, machine)


class DeviceSandbox:
    """A simulated device without its network side; see the module docstring.

    A subclass provides ``vanish()`` (what an armed fault does: the device disappears) and calls
    ``_prepare_root()`` before serving and ``_kill_processes()``/``_join_threads()`` when stopping.
    """

    def __init__(self, root: Path, *, auth: bool = True, trusted_keys: Path | None = None,
                 accept_new_keys: bool = False, max_payload: int = wire.MAX_PAYLOAD,
                 features: Sequence[str] = DEFAULT_FEATURES, python: str | None = None,
                 serial: str = "qskew-sim", model: str | None = None, abi: str | None = None,
                 disk_quota_bytes: int | None = None, board=None):
        self.features = tuple(features)
        self.board = board  # None, or the BoardShell every shell runs in (module docstring)
        if model is None:
            model = board.model if board is not None else DEFAULT_MODEL
        _check_identity(serial, model, self.features, max_payload, disk_quota_bytes)
        _check_auth(auth, trusted_keys, accept_new_keys)
        self.root = Path(os.path.realpath(root))
        self.auth = auth
        self.trusted_keys = None if trusted_keys is None else Path(trusted_keys)
        self.accept_new_keys = accept_new_keys
        self.max_payload = max_payload
        self.python = python or (board.python if board is not None else sys.executable)
        self.shell = board if board is not None else HostShell(self.root, self.python)  # confines shells
        self._serial = serial
        self.model = model
        self.abi = abi or (board.abi if board is not None else host_abi())
        self.disk_quota_bytes = disk_quota_bytes
        self._accepted_keys: list = []  # keys accepted this session (also appended to trusted_keys)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._processes: dict[int, subprocess.Popen] = {}  # running shells: pid (= process group id) -> process
        self._token = secrets.token_hex(8)  # in every device shell's environment: finds strays at stop()
        self._stopped = threading.Event()
        self._fault: tuple[str, int] | None = None
        self._fault_count = 0
        if auth and accept_new_keys:
            log.warning("[%s] accepting ANY new ADB key (accept_new_keys): whoever reaches this device "
                        "gets a shell as this user", serial)

    def vanish(self) -> None:
        """The device disappears (provided by the network side)."""
        raise NotImplementedError

    # --- identity and keys -------------------------------------------------------------------

    @property
    def serial(self) -> str:
        """The device's ro.serialno (adb itself names TCP devices ``127.0.0.1:<port>``)."""
        return self._serial

    @property
    def product_name(self) -> str:
        return PRODUCT_NAME

    def banner(self) -> bytes:
        """The CNXN payload: ``device::ro.product.name=..;ro.product.model=..;...;features=..``."""
        text = (f"device::ro.product.name={self.product_name};ro.product.model={self.model};"
                f"ro.product.device={self.product_name};features={','.join(self.features)}")
        return text.encode()

    def properties(self) -> dict[str, str]:
        """What ``getprop`` answers on this device."""
        return {"ro.product.model": self.model, "ro.product.name": self.product_name,
                "ro.product.device": self.product_name, "ro.product.manufacturer": "qskew",
                "ro.product.cpu.abi": self.abi, "ro.product.cpu.abilist": self.abi,
                "ro.serialno": self._serial, "ro.build.version.release": BUILD_RELEASE,
                "ro.build.version.sdk": SDK_VERSION, **(self.board.properties() if self.board else {})}

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
                adb_auth.append_key_line(self.trusted_keys, payload.rstrip(b"\0").strip())
        log.info("[%s] accepted a new public key", self._serial)
        return True

    # --- shells ------------------------------------------------------------------------------

    def shell_env(self) -> dict[str, str]:
        """Environment of device shells inside the confinement: PATH starts with /system/bin."""
        return self.shell.device_env({"ANDROID_SERIAL": self._serial, PROCESS_TOKEN_VAR: self._token})

    def spawn_shell(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        """Start ``sh -c command`` confined to the device, in its own (host) process group."""
        wrapped = self.shell.wrap(command, self.shell_env())
        env = {"PATH": os.environ.get("PATH", os.defpath), **wrapped.env, PROCESS_TOKEN_VAR: self._token}
        proc = subprocess.Popen(list(wrapped.argv), cwd=self.root, env=env,
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

    def spawn_thread(self, target, name: str, *args) -> threading.Thread:
        """Run ``target(*args)`` on a daemon thread that ``stop()`` waits for."""
        def body():
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:  # started under the lock, so _join_threads never sees an unstarted thread
            self._threads.add(thread)
            thread.start()
        return thread

    # --- file system as the sync service sees it --------------------------------------------

    @property
    def sync_root(self) -> str:
        """The host folder sync may touch: the device's /data/local/tmp."""
        return os.path.realpath(self.shell.data_dir)

    def host_path(self, device_path: str) -> str:
        """The host path of a device path (before the sync service checks it is inside sync_root)."""
        return self.shell.host_path(device_path)

    # --- faults ------------------------------------------------------------------------------

    def vanish_after(self, stage: str, nbytes: int = 0) -> None:
        """Arm a fault: vanish after ``nbytes`` of SEND DATA received ("push"), of RECV DATA sent
        ("pull"), or when a shell command containing ``device_runner`` has run 0.5 s ("run")."""
        if stage not in FAULT_STAGES:
            raise ValueError(f"unknown fault stage {stage!r}; known: {', '.join(FAULT_STAGES)}")
        with self._lock:
            self._fault = (stage, max(0, int(nbytes)))
            self._fault_count = 0

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

    # --- start and stop ----------------------------------------------------------------------

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


def _check_identity(serial: str, model: str, features: tuple[str, ...], max_payload: int,
                    disk_quota_bytes: int | None) -> None:
    """ValueError for settings a real adbd could not announce or the simulator does not speak."""
    if not wire.MAX_PAYLOAD_V1 <= max_payload <= wire.MAX_PAYLOAD:
        raise ValueError(f"max_payload {max_payload} must be between {wire.MAX_PAYLOAD_V1} and {wire.MAX_PAYLOAD}")
    for name, value in [("serial", serial), ("model", model), *(("feature", f) for f in features)]:
        if not value or set(value) & _BANNER_FORBIDDEN:
            raise ValueError(f"{name} {value!r} must be non-empty without any of : ; = , or newlines")
    bad = sorted(set(features) & set(FORBIDDEN_FEATURES))
    if bad:
        raise ValueError(f"features {bad} change the wire format and are not simulated")
    if disk_quota_bytes is not None and disk_quota_bytes < 0:
        raise ValueError("disk_quota_bytes must be >= 0")


def _check_auth(auth: bool, trusted_keys: Path | None, accept_new_keys: bool) -> None:
    """ValueError for an authenticating device nobody could ever connect to."""
    if auth and trusted_keys is None and not accept_new_keys:
        raise ValueError("auth is on but no trusted_keys file is given (and accept_new_keys is off): "
                         "no host could ever connect")


def _getprop_script(props: dict[str, str]) -> str:
    """A POSIX sh ``getprop``: ``getprop KEY [DEFAULT]``, or every ``[key]: [value]`` without args."""
    listing = "\n".join(f"  printf '%s\\n' {shlex.quote(f'[{k}]: [{v}]')}" for k, v in sorted(props.items()))
    cases = "\n".join(f"  {shlex.quote(k)}) printf '%s\\n' {shlex.quote(v)} ;;" for k, v in sorted(props.items()))
    return ("#!/bin/sh\n# getprop of a qskew simulated device\n"
            f"if [ $# -eq 0 ]; then\n{listing}\n  exit 0\nfi\n"
            f"case \"$1\" in\n{cases}\n  *) printf '%s\\n' \"${{2-}}\" ;;\nesac\n")


def _write_executable(path: Path, text: str) -> None:
    """Replace ``path`` whole (a shell may be starting it) and make it executable."""
    atomic_write_text(path, text)
    path.chmod(EXECUTABLE_MODE)


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
