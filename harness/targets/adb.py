"""A phone or board reached over ADB (TCP ``host:port`` or USB serial), built on ``adb-shell`` 0.4.4.

What this adds to the stock adb-shell client (``devices-and-adb.md`` section 4):

* The link of ``harness.targets.adb_link``: ``TCP_NODELAY``, complete writes, prompt EOF, the
  device's largest payload, and the device's CNXN banner, so the features are known without
  probing: exit codes come from shell protocol v2 (``shell,v2,raw:``) when the device lists ``shell_v2``,
  else from a marker line the exit status is printed behind (``; echo "<marker>$?"``). A v1-only
  device is never sent a v2 OPEN (it would hang until the read timeout).
* Every argument of a command is quoted with ``shlex.quote``, so names with spaces, quotes, ``;``,
  ``$()`` or newlines are data, never code.
* Long jobs run detached (``run_detached``): started in their own session with ``setsid``, output
  and exit status written to files in the job folder, then polled with short commands. A silent
  inference never meets a read timeout, and a dropped connection is reconnected (a few attempts with
  backoff) and the same job polled again. At the job's deadline the remote process group is killed.
  The same job still running from an earlier session (its host died) is attached to, not started
  a second time.
* Files: sync ``SEND`` to a temp name next to the destination, then ``mv``, so a content-addressed
  name never holds a partial file; ``sha256sum`` (or ``toybox``/``busybox sha256sum``, ``openssl``,
  the device's Python) for hashes.
* adb-shell and socket exceptions are translated once, here, into ``harness.errors`` (TargetError,
  CommandFailed, CommandTimeout), each naming the device and the command or path.

>>> with AdbTarget("pixel-7", address="192.168.1.40:5555") as phone:   # doctest: +SKIP
...     phone.run(["getprop", "ro.product.model"], timeout_s=10).stdout.strip()
'Pixel 7'
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import secrets
import shlex
import stat as stat_mod
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice

from harness.targets.adb_wire import parse_shell_v2
from harness.errors import CommandFailed, CommandTimeout, ConfigError, TargetError
from harness.targets import adb_keys
from harness.targets.adb_link import (LINK_ERRORS, TIMEOUT_ERRORS, DeviceBanner, FileSink, FileSource,
                                      LocalFileError, NoDelayTcpTransport, QskewAdbDevice, QskewIOManager)
from harness.targets.base import RemoteStat, Target
from harness.targets.process import CommandResult

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_WORKDIR = "/data/local/tmp/qskew"  # world-writable and exec-allowed on stock Android
CONNECT_TIMEOUT_S = 10.0       # TCP connect + CNXN on a phone over Wi-Fi
AUTH_TIMEOUT_S = 60.0          # after our public key is sent: time for a person to tap "Allow"
COMMAND_TIMEOUT_S = 120.0      # short commands: mkdir, mv, stat, a big test set's sha256 on a slow board
TRANSFER_READ_TIMEOUT_S = 60.0  # longest silence inside one push/pull (one packet's round trip)
RECONNECT_ATTEMPTS = 5         # a Wi-Fi blip or adbd restart (waits 0.25+0.5+1+2 s); longer = gone
RECONNECT_BACKOFF_S = 0.25     # first wait before reconnecting; doubles each attempt
POLL_TIMEOUT_S = 30.0          # one poll of a detached job; a link silent for longer is reconnected
POLL_FIRST_S = 0.02            # a job of a few samples finishes in well under a second
POLL_MAX_S = 1.0               # longest wait between polls of a long job: one tiny command per second
POLL_GROWTH = 1.5              # polls thin out geometrically while a job runs
SHELL_V2_SERVICE = b"shell,v2,raw"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # what a working tool prints for /dev/null
# Hash tools tried in order (argv prefix; the path is appended). The device's Python comes last.
SHA256_TOOLS = (("sha256sum",), ("toybox", "sha256sum"), ("busybox", "sha256sum"),
                ("openssl", "dgst", "-sha256", "-r"))
PY_SHA256 = ("import hashlib,sys\nh=hashlib.sha256()\nwith open(sys.argv[1],'rb') as f:\n"
             " for b in iter(lambda: f.read(1<<20), b''): h.update(b)\nprint(h.hexdigest())")
PY_SETSID = "import os,sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"
# The detached job's files in its job folder, and the script that runs it and records its status.
DETACHED_OUT, DETACHED_ERR, DETACHED_EXIT = ".qskew-job.stdout", ".qskew-job.stderr", ".qskew-job.exit"
DETACHED_PID = ".qskew-job.pid"  # the job's process group id, written right after launch
START_RECOVERY_S = 5.0         # after a drop during a start: how long the pid file may take to appear
DETACHED_SCRIPT = ('o=$1 e=$2 x=$3 d=$4; shift 4; cd "$d" && "$@" </dev/null >"$o" 2>"$e"; '
                   'echo $? >"$x.tmp"; mv -f "$x.tmp" "$x"')
# One poll: the exit status if the job ended, else "running" and the last line it printed.
POLL_SCRIPT = ('if [ -f "$1" ]; then echo "exit $(cat "$1")"; elif kill -0 "$2" 2>/dev/null; '
               'then echo running; tail -n 1 "$3" 2>/dev/null || true; elif [ -f "$1" ]; '
               'then echo "exit $(cat "$1")"; '
               'else echo gone; fi')
MOVE_SCRIPT = 'if [ -e "$1" ]; then mv -f "$1" "$2"; fi && [ -e "$2" ]'  # safe to repeat after a drop
PROPS_SCRIPT = 'for p in "$@"; do printf "%s=%s\\n" "$p" "$(getprop "$p")"; done'
GETPROP_KEYS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
                "abi": "ro.product.cpu.abi", "os_release": "ro.build.version.release",
                "sdk": "ro.build.version.sdk", "serialno": "ro.serialno"}

class _LinkLost(TargetError):
    """The connection broke under a command that may or may not have run on the device."""


class AdbTarget(Target):
    """A device over ADB: ``address="host:port"`` (TCP) or ``serial=...`` (USB, needs adb-shell[usb]).

    Connects lazily on first use (``connect()`` forces it); ``close()`` drops the connection.
    ``max_payload`` caps the payload below what the device offers (None: the device's maximum).
    Calls are serialized by a lock: one job at a time per device, as the scheduler runs them.
    """

    def __init__(self, name: str, *, address: str | None = None, serial: str | None = None,
                 workdir: str = DEFAULT_WORKDIR, python: str = "python3", key_path: Path | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, auth_timeout_s: float = AUTH_TIMEOUT_S,
                 max_payload: int | None = None, nodelay: bool = True,
                 reconnect_attempts: int = RECONNECT_ATTEMPTS):
        if (address is None) == (serial is None):
            raise ConfigError(f"device {name!r}: give exactly one of address (host:port) or serial (USB)")
        self.name = name
        self.workdir = workdir
        self.python = python
        self._address = _parse_address(name, address) if address is not None else None
        self._serial = serial
        self._where = address if address is not None else f"usb:{serial}"
        self._key_path = key_path
        self._connect_timeout_s = connect_timeout_s
        self._auth_timeout_s = auth_timeout_s
        self._max_payload = max_payload
        self._nodelay = nodelay
        self._reconnect_attempts = max(1, int(reconnect_attempts))
        self._device: AdbDevice | None = None
        self._banner: DeviceBanner | None = None
        self._was_connected = False
        self._lock = threading.RLock()
        self._signer = None
        self._key_file: Path | None = None
        self._tools: dict[str, Any] = {}
        self._properties: dict[str, Any] | None = None
        self.reconnects = 0  # how many times a dropped link was re-established (logged per device)

    # --- connection -----------------------------------------------------------------------------

    @property
    def features(self) -> frozenset[str]:
        """Features the device announced in its banner (connects if needed)."""
        self.connect()
        return self._banner.features

    @property
    def max_payload(self) -> int:
        """Largest ADB payload used on this connection (the device's, capped by ``max_payload``)."""
        return self.connect()._maxdata

    def connect(self) -> AdbDevice:
        """The connected adb-shell device, connecting (or reconnecting after a drop) if needed."""
        return self._connected("connect")

    def _connected(self, what: str) -> AdbDevice:
        """``connect()`` for an operation: errors name ``what`` (the command or path)."""
        with self._lock:
            if self._device is not None and self._device.available and self._link_open():
                return self._device
            if not self._was_connected:
                return self._connect_once(what)
            return self._reconnect(what)

    def close(self) -> None:
        with self._lock:
            self._drop_link()

    def _link_open(self) -> bool:
        """Whether the connection still stands (a TCP peer that closed it is seen before use)."""
        transport = self._device._io_manager._transport
        return transport.is_open() if isinstance(transport, NoDelayTcpTransport) else True

    def _drop_link(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except Exception:  # closing a broken socket may raise anything; it is gone either way
                pass
        self._device = None

    def _reconnect(self, what: str) -> AdbDevice:
        """Reconnect after a drop, with backoff; TargetError naming ``what`` if the device is gone."""
        delay, last = RECONNECT_BACKOFF_S, None
        for attempt in range(1, self._reconnect_attempts + 1):
            try:
                device = self._connect_once(what)
                self.reconnects += 1
                log.info("[%s] reconnected to %s (attempt %d)", self.name, self._where, attempt)
                return device
            except TargetError as exc:
                last = exc
                log.info("[%s] reconnect %d/%d to %s failed: %s", self.name, attempt,
                         self._reconnect_attempts, self._where, exc)
                if attempt < self._reconnect_attempts:
                    time.sleep(delay)
                    delay *= 2
        raise TargetError(f"device {self._where} is gone ({what}): {self._reconnect_attempts} reconnect "
                          f"attempts failed: {getattr(last, 'reason', last)}", self.name) from last

    def _connect_once(self, what: str) -> AdbDevice:
        self._drop_link()
        if self._signer is None:
            self._signer, self._key_file = adb_keys.load_signer(self._key_path, self.name)
        transport = self._make_transport()
        device = QskewAdbDevice(transport, banner="qskew")
        manager = QskewIOManager(transport)
        device._io_manager = manager  # adb-shell builds its own; ours keeps the banner, sums fast
        try:
            device.connect(rsa_keys=[self._signer], transport_timeout_s=self._connect_timeout_s,
                           auth_timeout_s=self._auth_timeout_s, read_timeout_s=self._connect_timeout_s)
        except (*LINK_ERRORS, adb_exc.DeviceAuthError) as exc:
            try:
                device.close()
            except Exception:
                pass
            raise self._connect_error(what, manager, exc) from exc
        if self._max_payload:
            device._maxdata = min(device._maxdata, int(self._max_payload))
        self._banner = DeviceBanner.parse(manager.banner)
        self._device, self._was_connected = device, True
        log.debug("[%s] connected to %s: max payload %d, features %s", self.name, self._where,
                  device._maxdata, ",".join(sorted(self._banner.features)))
        return device

    def _connect_error(self, what: str, manager: QskewIOManager, exc: BaseException) -> TargetError:
        if isinstance(exc, ConnectionRefusedError):
            reason = (f"cannot connect to {self._where}: connection refused (is adbd listening? on a "
                      f"phone: `adb tcpip 5555`)")
        elif manager.auth_requested:
            reason = (f"{self._where} did not accept ADB key {self._key_file} ({_bare(exc)}); authorize "
                      f"this computer on the device (\"Allow USB debugging?\") or add "
                      f"{self._key_file}.pub to its adb_keys")
        elif isinstance(exc, (adb_exc.InvalidCommandError, adb_exc.InvalidChecksumError)):
            reason = (f"{self._where} answered, but not in ADB ({_bare(exc)}): is it the right address "
                      f"and port, and is the device's adbd listening there?")
        else:
            reason = f"cannot connect to {self._where}: {_bare(exc)}"
        err = TargetError(f"{what}: {reason}", self.name)
        err.reason = reason  # without the operation, for the reconnect summary
        return err

    def _make_transport(self):
        if self._address is not None:
            return NoDelayTcpTransport(*self._address, nodelay=self._nodelay)
        from adb_shell import adb_device

        if adb_device.UsbTransport is None:
            raise TargetError(f"USB device {self._serial!r} needs libusb1: pip install 'adb-shell[usb]'",
                              self.name)
        try:
            return adb_device.UsbTransport.find_adb(self._serial, None, self._connect_timeout_s)
        except Exception as exc:  # usb1 raises its own tree (USBErrorBusy when an adb server holds it)
            raise TargetError(f"cannot open USB device {self._serial!r}: {_bare(exc)} (if an adb server "
                              f"runs, stop it: adb kill-server)", self.name) from exc

    def _call(self, what: str, op: Callable[[AdbDevice], T], *, idempotent: bool) -> T:
        """Run ``op`` on the connected device, translating link errors once.

        An idempotent op (stat, pull, a poll...) is retried after a reconnect; any other op raises
        TargetError naming ``what`` when the link breaks under it.
        """
        with self._lock:
            for attempt in range(self._reconnect_attempts + 1):
                device = self._connected(what)
                try:
                    return op(device)
                except LocalFileError as exc:
                    raise TargetError(f"{what}: local file error: {exc}", self.name) from exc
                except LINK_ERRORS as exc:
                    self._drop_link()
                    if not idempotent or attempt == self._reconnect_attempts:
                        raise TargetError(f"{what}: connection to {self._where} lost: {_bare(exc)}",
                                          self.name) from exc
                    log.info("[%s] %s: link lost (%s); reconnecting", self.name, what, _bare(exc))
            raise AssertionError("unreachable")

    # --- commands -------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], timeout_s: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` (every argument quoted) and return its exit code and output.

        stdout and stderr are separate on shell-v2 devices; a legacy device merges them into stdout.
        """
        argv = _checked_argv(argv, self.name)
        command = shell_command(argv, cwd)
        what = f"command {_shown(argv)}"
        start = time.perf_counter()
        with self._lock:
            device = self._connected(what)
            try:
                if "shell_v2" in self._banner.features:
                    code, out, err = self._run_v2(device, command, timeout_s, what)
                else:
                    code, out, err = self._run_marker(device, command, timeout_s, what)
            except TIMEOUT_ERRORS as exc:
                self._drop_link()  # abandon the stream; the next call starts on a clean connection
                raise CommandTimeout(list(argv), timeout_s, "", self.name) from exc
            except LINK_ERRORS as exc:
                self._drop_link()
                raise _LinkLost(f"{what}: connection to {self._where} lost: {_bare(exc)}",
                                self.name) from exc
        return CommandResult(tuple(argv), code, _decode(out), _decode(err), time.perf_counter() - start)

    def _run_v2(self, device: AdbDevice, command: str, timeout_s: float, what: str):
        data = device._service(SHELL_V2_SERVICE, self._payload(device, SHELL_V2_SERVICE, command, what),
                               read_timeout_s=timeout_s, timeout_s=timeout_s, decode=False)
        out, err, code = parse_shell_v2(data)
        if code is None:
            raise TargetError(f"{what}: the shell stream ended without an exit status", self.name)
        return code, out, err

    def _run_marker(self, device: AdbDevice, command: str, timeout_s: float, what: str):
        marker = f"__QSKEW_RC_{secrets.token_hex(8)}="
        full = f'{command}; echo "{marker}$?"'
        data = device._service(b"shell", self._payload(device, b"shell", full, what),
                               read_timeout_s=timeout_s, timeout_s=timeout_s, decode=False)
        at = data.rfind(marker.encode())
        match = re.match(rb"\s*(\d+)", data[at + len(marker):]) if at >= 0 else None
        if match is None:
            raise TargetError(f"{what}: the shell output ended without the exit-status marker",
                              self.name)
        return int(match.group(1)), data[:at], b""

    def _payload(self, device: AdbDevice, service: bytes, command: str, what: str) -> bytes:
        payload = command.encode("utf-8")
        if len(service) + 2 + len(payload) > device._maxdata:
            raise TargetError(f"{what}: command is {len(payload)} bytes, more than the device's "
                              f"{device._maxdata}-byte payload", self.name)
        return payload

    def _check(self, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S,
               cwd: str | None = None) -> CommandResult:
        """``run`` that raises CommandFailed on a non-zero exit."""
        result = self.run(argv, timeout_s=timeout_s, cwd=cwd)
        if result.returncode != 0:
            raise CommandFailed(list(argv), result.returncode, result.stdout + result.stderr, self.name)
        return result

    def _run_retrying(self, argv: Sequence[str], what: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """A command safe to repeat (read-only, or idempotent like ``mkdir -p``), retried after a
        reconnect; raises CommandFailed on a non-zero exit, returns its stdout."""
        argv = _checked_argv(argv, self.name)

        def op(device: AdbDevice) -> str:
            if "shell_v2" in self._banner.features:
                code, out, err = self._run_v2(device, shell_command(argv), timeout_s, what)
            else:
                code, out, err = self._run_marker(device, shell_command(argv), timeout_s, what)
            if code != 0:
                raise CommandFailed(list(argv), code, _decode(out + err), self.name)
            return _decode(out)
        return self._call(what, op, idempotent=True)

    # --- detached jobs ----------------------------------------------------------------------------

    def run_detached(self, argv: Sequence[str], job_dir: str, timeout_s: float,
                     cwd: str | None = None,
                     watch: Callable[[str], None] | None = None) -> CommandResult:
        """Run ``argv`` in its own session on the device and poll it until it exits.

        stdout, stderr and the exit status go to files in ``job_dir``; a dropped connection is
        reconnected and the job polled again. On timeout the job's process group is killed and
        CommandTimeout raised; a device that stays unreachable gives TargetError naming the command.
        """
        argv = _checked_argv(argv, self.name)
        start = time.perf_counter()
        files = {k: posixpath.join(job_dir, n) for k, n in
                 (("out", DETACHED_OUT), ("err", DETACHED_ERR), ("exit", DETACHED_EXIT),
                  ("pid", DETACHED_PID))}
        pgid = self._start_detached(argv, job_dir, cwd or job_dir, files)
        log.debug("[%s] started %s as process group %d", self.name, _shown(argv), pgid)
        code = self._wait_detached(argv, files, pgid, start + timeout_s, timeout_s, watch)
        out = self._read_small(files["out"], f"output of {_shown(argv)}")
        err = self._read_small(files["err"], f"output of {_shown(argv)}")
        return CommandResult(tuple(argv), code, _decode(out), _decode(err), time.perf_counter() - start)

    def _start_detached(self, argv: Sequence[str], job_dir: str, cwd: str,
                        files: Mapping[str, str]) -> int:
        launcher = self._setsid_prefix()
        inner = [*launcher, "sh", "-c", DETACHED_SCRIPT, "qskew-job", files["out"], files["err"],
                 files["exit"], cwd, *argv]
        q = shlex.quote
        pid, pid_tmp = q(files["pid"]), q(files["pid"] + ".tmp")
        # The same job still running from an earlier session (its host died or was stopped): attach
        # to it instead of starting it twice. Its pid must still be the job's own shell (pids recycle).
        attach = (f"if [ ! -f {q(files['exit'])} ] && p=$(cat {pid} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null "
                  f"&& tr '\\0' '\\n' </proc/\"$p\"/cmdline 2>/dev/null | grep -qxF {q(files['exit'])}; "
                  f"then echo \"QSKEW_PGID=$p QSKEW_ATTACHED\"; exit 0; fi; ")
        script = (f"cd {q(job_dir)} || exit 97; {attach}rm -f {q(files['exit'])} {q(files['exit'] + '.tmp')} "
                  f"{q(files['out'])} {q(files['err'])} {pid}; "
                  f"{' '.join(q(a) for a in inner)} </dev/null >/dev/null 2>&1 & "
                  f"echo $! >{pid_tmp} && mv -f {pid_tmp} {pid} && echo \"QSKEW_PGID=$!\"")
        try:
            result = self._check(["sh", "-c", script])
        except _LinkLost as exc:  # did it start before the link went? its pid file says
            log.info("[%s] link lost while starting %s; looking for its pid file", self.name, _shown(argv))
            return self._recover_start(argv, files, exc)
        match = re.search(r"QSKEW_PGID=(\d+)", result.stdout)
        if match is None:
            raise TargetError(f"starting {_shown(argv)} in {job_dir} printed no process id: "
                              f"{result.stdout + result.stderr!r}", self.name)
        if "QSKEW_ATTACHED" in result.stdout:
            log.info("[%s] %s is still running from an earlier session (process %s): polling it",
                     self.name, _shown(argv), match.group(1))
        return int(match.group(1))

    def _recover_start(self, argv: Sequence[str], files: Mapping[str, str], exc: TargetError) -> int:
        """The job's process group from its pid file, written right after launch; reconnects."""
        deadline = time.perf_counter() + START_RECOVERY_S
        while True:
            text = self._read_small(files["pid"], f"start of {_shown(argv)}").strip()
            if text.isdigit():
                return int(text)
            if time.perf_counter() > deadline:
                raise TargetError(f"the link dropped while starting {_shown(argv)} and it left no "
                                  f"pid file {files['pid']}: not started ({exc})", self.name) from exc
            time.sleep(POLL_FIRST_S)

    def _setsid_prefix(self) -> tuple[str, ...]:
        """``setsid`` when the device has it, else the device's Python doing the same."""
        if "setsid" not in self._tools:
            probe = self.run(["sh", "-c", "command -v setsid"], timeout_s=COMMAND_TIMEOUT_S)
            self._tools["setsid"] = (("setsid",) if probe.returncode == 0 and probe.stdout.strip()
                                     else (self.python, "-c", PY_SETSID))
        return self._tools["setsid"]

    def _wait_detached(self, argv: Sequence[str], files: Mapping[str, str], pgid: int,
                       deadline: float, timeout_s: float, watch: Callable[[str], None] | None) -> int:
        what = f"polling {_shown(argv)} (process group {pgid})"
        delay = POLL_FIRST_S
        while True:
            reply = self._run_retrying(["sh", "-c", POLL_SCRIPT, "qskew-poll", files["exit"], str(pgid),
                                        files["out"]], what, POLL_TIMEOUT_S).strip()
            state, _, last_line = reply.partition("\n")
            if state == "running" and watch is not None and last_line:
                watch(last_line)
            if state.startswith("exit "):
                try:
                    return int(state.split()[1])
                except (IndexError, ValueError):
                    raise TargetError(f"{what}: unreadable exit status {state!r}", self.name) from None
            if state != "running":
                raise TargetError(f"{_shown(argv)} (process group {pgid}) ended without an exit "
                                  f"status: killed, or the device rebooted?", self.name)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._kill_group(pgid, argv)
                output = self._read_small(files["out"], what) + self._read_small(files["err"], what)
                raise CommandTimeout(list(argv), timeout_s, _decode(output), self.name)
            time.sleep(min(delay, remaining))
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)

    def _kill_group(self, pgid: int, argv: Sequence[str]) -> None:
        script = 'kill -9 -"$1" 2>/dev/null || kill -9 "$1" 2>/dev/null; true'
        self._run_retrying(["sh", "-c", script, "qskew-kill", str(pgid)], f"killing {_shown(argv)}")
        log.warning("[%s] killed %s (process group %d) after its timeout", self.name, _shown(argv), pgid)

    def _read_small(self, remote: str, what: str) -> bytes:
        """A small remote file's bytes through sync (b"" if it does not exist)."""
        def op(device: AdbDevice) -> bytes:
            sink = FileSink(None)
            try:
                device.pull(remote, sink, read_timeout_s=TRANSFER_READ_TIMEOUT_S)
            except adb_exc.AdbCommandFailureException:
                return b""
            return sink.getvalue()
        return self._call(f"pull {remote} ({what})", op, idempotent=True)

    # --- files ----------------------------------------------------------------------------------

    def push(self, local: Path, remote: str) -> None:
        """Push through a temp name next to ``remote`` and ``mv`` it into place."""
        local = Path(local)
        what = f"push {local} -> {remote}"
        try:
            mode = stat_mod.S_IMODE(os.stat(local).st_mode)
        except OSError as exc:
            raise TargetError(f"{what}: cannot read local file: {exc}", self.name) from exc
        tmp = posixpath.join(posixpath.dirname(remote) or ".",
                             f".{posixpath.basename(remote)}.{secrets.token_hex(6)}.part")

        def op(device: AdbDevice) -> None:
            with FileSource(local) as source:
                device.push(source, tmp, st_mode=stat_mod.S_IFREG | mode,
                            read_timeout_s=TRANSFER_READ_TIMEOUT_S)
        try:
            try:
                self._call(what, op, idempotent=True)
            except adb_exc.PushFailedError as exc:
                self._drop_link()  # adb-shell leaves the failed sync stream open
                raise TargetError(f"{what} failed on the device: {_push_message(exc)}", self.name) from exc
            self._run_retrying(["sh", "-c", MOVE_SCRIPT, "qskew-mv", tmp, remote], f"mv {tmp} {remote}")
        except TargetError:
            self._discard(tmp)
            raise

    def _discard(self, remote: str) -> None:
        """Best-effort removal of a temp file after a failed push (skipped when the link is down)."""
        if self._device is None:
            return
        try:
            self.run(["rm", "-f", remote], timeout_s=COMMAND_TIMEOUT_S)
        except TargetError as exc:
            log.debug("[%s] could not remove %s: %s", self.name, remote, exc)

    def pull(self, remote: str, local: Path) -> None:
        """Pull into a temp file next to ``local`` and rename it into place."""
        local = Path(local)
        what = f"pull {remote} -> {local}"
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".part", dir=local.parent)
            os.close(fd)
        except OSError as exc:
            raise TargetError(f"{what}: cannot write local file: {exc}", self.name) from exc

        def op(device: AdbDevice) -> None:
            with FileSink(Path(tmp)) as sink:
                device.pull(remote, sink, read_timeout_s=TRANSFER_READ_TIMEOUT_S)
        try:
            try:
                self._call(what, op, idempotent=True)
            except adb_exc.AdbCommandFailureException as exc:
                raise TargetError(f"{what} failed on the device: {_bare(exc)}", self.name) from exc
            os.replace(tmp, local)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def stat(self, remote: str) -> RemoteStat | None:
        mode, size, mtime = self._call(
            f"stat {remote}", lambda d: d.stat(remote, read_timeout_s=COMMAND_TIMEOUT_S), idempotent=True)
        if mode == 0:  # sync STAT v1 answers all zeros for a missing path
            return None
        return RemoteStat(size_bytes=size, mode=mode, mtime=mtime)

    def sha256(self, remote: str) -> str | None:
        """The device's own hash of ``remote`` (one round trip; a failure asks stat why)."""
        argv = [*self._sha256_tool(), remote]
        try:
            out = self._run_retrying(argv, f"sha256 of {remote}")
        except CommandFailed:
            if self.stat(remote) is None:
                return None
            raise
        digest = _first_hex_digest(out)
        if digest is None:
            raise TargetError(f"sha256 of {remote}: unexpected output {out.strip()[:200]!r}", self.name)
        return digest

    def _sha256_tool(self) -> tuple[str, ...]:
        """The first hash tool that hashes /dev/null correctly (asked once per target)."""
        if "sha256" in self._tools:
            return self._tools["sha256"]
        candidates = [*SHA256_TOOLS, (self.python, "-c", PY_SHA256)]
        for tool in candidates:
            result = self.run([*tool, "/dev/null"], timeout_s=COMMAND_TIMEOUT_S)
            if result.returncode == 0 and _first_hex_digest(result.stdout) == EMPTY_SHA256:
                self._tools["sha256"] = tool
                return tool
        tried = ", ".join(" ".join(t[:2]) for t in candidates)
        raise TargetError(f"no working sha256 tool on {self._where} (tried {tried})", self.name)

    def mkdirs(self, remote: str) -> None:
        self._run_retrying(["mkdir", "-p", remote], f"mkdir -p {remote}")

    # --- facts ----------------------------------------------------------------------------------

    def properties(self) -> Mapping[str, Any]:
        """Model, ABI, OS release/SDK, serial (getprop), banner features and the Python version."""
        if self._properties is None:
            device = self.connect()
            props: dict[str, Any] = {
                "name": self.name, "kind": "adb", "transport": "tcp" if self._address else "usb",
                "address": self._where, "features": sorted(self._banner.features),
                "max_payload_bytes": device._maxdata, "python": self.python, "workdir": self.workdir}
            keys = list(GETPROP_KEYS.values())
            result = self.run(["sh", "-c", PROPS_SCRIPT, "qskew-props", *keys], timeout_s=COMMAND_TIMEOUT_S)
            found = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
            props.update({field: found.get(key) or None for field, key in GETPROP_KEYS.items()})
            props.update(self._python_version())
            self._properties = props
        return dict(self._properties)

    def _python_version(self) -> dict[str, Any]:
        argv = [self.python, "-c", "import platform; print(platform.python_version())"]
        result = self.run(argv, timeout_s=COMMAND_TIMEOUT_S)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-300:]
            return {"python_version": None, "python_error": f"exit {result.returncode}: {output}"}
        return {"python_version": result.stdout.strip()}


def shell_command(argv: Sequence[str], cwd: str | None = None) -> str:
    """One ``sh`` command line running ``argv`` verbatim (each argument quoted), stdin empty.

    >>> shell_command(["echo", "a b", "$(reboot)"], cwd="/data/local/tmp")
    "cd /data/local/tmp && echo 'a b' '$(reboot)' </dev/null"
    """
    line = " ".join(shlex.quote(str(a)) for a in argv) + " </dev/null"
    return f"cd {shlex.quote(cwd)} && {line}" if cwd else line


def _checked_argv(argv: Sequence[str], device: str) -> list[str]:
    argv = [str(a) for a in argv]
    if not argv:
        raise TargetError("empty command", device)
    if any("\0" in a for a in argv):
        raise TargetError(f"command {_shown(argv)} has a NUL byte in an argument", device)
    return argv


def _parse_address(name: str, address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"device {name!r}: address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _first_hex_digest(text: str) -> str | None:
    """The digest at the start of a hash tool's output (GNU prefixes "\\" when the name is escaped)."""
    match = re.match(r"\s*\\?([0-9a-fA-F]{64})\b", text or "")
    return match.group(1).lower() if match else None


def _push_message(exc: adb_exc.PushFailedError) -> str:
    msg = exc.args[0] if exc.args else ""
    return bytes(msg).decode("utf-8", errors="replace") if isinstance(msg, (bytes, bytearray)) else str(msg)


def _bare(exc: BaseException | None) -> str:
    """An exception as "Type: message" (adb-shell's messages alone can be empty)."""
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shown(argv: Sequence[str]) -> str:
    return repr(" ".join(str(a) for a in argv))


def _decode(data: bytes) -> str:
    return bytes(data).decode("utf-8", errors="replace")
