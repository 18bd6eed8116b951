"""A process that stays up on an ADB device: one shell-v2 stream for a whole device session.

The stream seam of an ADB target: ``SessionTarget.serve(argv)`` opens one ``shell,v2,raw:`` stream
(through adb-shell's connection, :class:`AdbShellStream`, or a socket to the adb server,
``adb_server.ServerStream``) running ``argv`` behind a tiny ``sh`` prologue that prints the
process id first (``QSKEW-PID <pid>``), and wraps it in :class:`ServedShell`, which answers the
same calls as the local target's ``process.ServedProcess``: ``greeting``, ``request``, ``close``,
``alive``. A request writes one line to the process's stdin (a shell-v2 stdin packet) and reads
stdout packets up to the line that ``is_last`` recognises; stderr is handed out with the answer.

Nothing reads the stream between requests (a served runner prints nothing between jobs), so the
rest of the session -- pushes, pulls, stats -- shares the ADB connection with it: adb-shell files
any packet of the idle stream away until the stream reads again. A device without shell protocol
v2 gets no stream (``None``: one runner per job, detached, as before). A request that times out
kills the process by its id; a stream whose link broke is dead, and ``is_last`` is never called
for it again (the caller falls back to a runner per job for that job).

Wire format of a ``shell,v2`` stream (both ways): packets of ``<id: u8><length: u32 LE><data>``;
id 0 stdin, 1 stdout, 2 stderr, 3 exit status (one byte), 4 close stdin.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Protocol, Sequence

from harness.errors import CommandTimeout, TargetError
from harness.targets import adb_wire as wire
from harness.targets.adb_link import MAX_OUTPUT_BYTES, PeerError
from harness.targets.adb_session import LinkLost, bare, shell_command
from harness.targets.process import CommandResult, ServedLost, refuse_out_of_step

log = logging.getLogger(__name__)

PID_PREFIX = "QSKEW-PID"      # the prologue's first line: the id of the process that serves
# Prints the shell's pid, then becomes argv ($@): the pid is the served process's own.
PID_PROLOGUE = 'echo "QSKEW-PID $$"; exec "$@"'
SHELL_V2_SERVE = b"shell,v2,raw"
MAX_LINE_BYTES = 1 << 20      # one stdout line held while it is incomplete: progress lines are short
KILL_TIMEOUT_S = 30.0         # the kill command after a request's timeout
STREAM_OPEN_TIMEOUT_S = 10.0  # opening the stream: the device or the server answers at once
RECV_BYTES = 64 * 1024        # one read of a server stream: a runner's answer is a few lines


class StreamTimeout(TargetError):
    """Nothing came from the stream before the deadline."""


class ByteStream(Protocol):
    """A bidirectional byte stream to one service on the device (the seam under ServedShell)."""

    def send(self, data: bytes, timeout_s: float) -> None: ...

    def recv(self, timeout_s: float) -> bytes:
        """Some bytes; b"" at the end of the stream; StreamTimeout when nothing comes in time;
        LinkLost when the link broke."""

    def close(self) -> None: ...

    @property
    def open(self) -> bool: ...


def served_command(argv: Sequence[str]) -> str:
    """The shell command of a served process: the pid prologue, then ``argv`` (quoted).

    >>> served_command(["python3", "run.py", "--serve"])
    'sh -c \\'echo "QSKEW-PID $$"; exec "$@"\\' qskew-serve python3 run.py --serve </dev/null'
    """
    return shell_command(["sh", "-c", PID_PROLOGUE, "qskew-serve", *argv]).replace(" </dev/null", "")


class ServedShell:
    """``process.ServedProcess``'s interface over a shell-v2 stream to a process on the device.

    ``kill(pid)`` ends the process from another command (after a timeout).
    """

    def __init__(self, stream: ByteStream, argv: Sequence[str], device: str,
                 kill: Callable[[int], None], limit_bytes: int = MAX_OUTPUT_BYTES):
        self.stream, self.argv, self.device = stream, tuple(str(a) for a in argv), device
        self.limit_bytes = limit_bytes  # one answer's stdout and stderr (LinkLimits.output_bytes)
        self._kill = kill
        self._raw = b""           # bytes of an incomplete shell-v2 packet
        self._partial = b""       # stdout after its last newline
        self._lines: list[str] = []
        self._err: list[bytes] = []
        self._ended = False       # exit packet or end of stream seen
        self._exit: int | None = None
        self._size = 0            # stdout and stderr bytes of the answer being read
        self.pid: int | None = None

    @property
    def alive(self) -> bool:
        return not self._ended and self.stream.open

    def greeting(self, timeout_s: float) -> str | None:
        """The first line the process prints after its pid (read once, then remembered); None if it
        ends or stays silent for ``timeout_s`` (it is then killed)."""
        if not hasattr(self, "_greeting"):
            deadline = time.perf_counter() + timeout_s
            try:
                first = self._next_line(deadline)
                if first is not None and first.startswith(PID_PREFIX + " "):
                    self.pid = int(first.split()[1]) if first.split()[1].isdigit() else None
                    first = self._next_line(deadline)
            except (StreamTimeout, LinkLost) as exc:
                log.info("[%s] served %s did not greet: %s", self.device, " ".join(self.argv), exc)
                first = None
            if first is None:
                self.close(kill=True)
            self._greeting = first
        return self._greeting

    def request(self, line: str, timeout_s: float, is_last: Callable[[str], int | None],
                watch: Callable[[str], None] | None = None) -> CommandResult:
        """Send ``line``; collect the answer's lines until ``is_last(line)`` gives the exit code.

        Raises CommandTimeout (the process is killed), ServedLost (the stream is dead) or PeerError
        (the answer outgrew ``limit_bytes``: the process is killed)."""
        start, got, code = time.perf_counter(), [], None
        self._size = sum(map(len, self._err))  # what this answer holds so far (stderr of the idle time too)
        deadline = start + timeout_s
        refuse_out_of_step(self, line)
        self._answering = True  # until this answer's last line is read
        try:
            self.stream.send(wire.encode_shell_packet(wire.SHELL_STDIN, (line + "\n").encode()), timeout_s)
        except LinkLost as exc:
            raise ServedLost(f"served {' '.join(self.argv)}: {exc}", self.device) from exc
        while code is None:
            try:
                text = self._next_line(deadline)
            except StreamTimeout:
                self.close(kill=True)
                raise CommandTimeout(list(self.argv) + [line], timeout_s, "".join(got), self.device) from None
            except LinkLost as exc:
                raise ServedLost(f"served {' '.join(self.argv)}: {exc}", self.device) from exc
            if text is None:  # the process ended
                code = 255 if self._exit is None else self._exit
                if not got:  # it had died before this request: nothing of it was answered
                    raise ServedLost(f"served {' '.join(self.argv)} had exited ({code})", self.device)
                break
            code = is_last(text)
            if code is None:
                got.append(text + "\n")
                if watch is not None:
                    watch(text)
        err, self._err, self._answering = b"".join(self._err), [], False
        return CommandResult(self.argv + (line,), code, "".join(got), wire_text(err),
                             time.perf_counter() - start)

    def close(self, kill: bool = False) -> None:
        """End the process: close its stdin (a served runner then exits) and the stream; with
        ``kill``, kill it by its pid first."""
        if kill and self.pid is not None and not self._ended:
            try:
                self._kill(self.pid)
            except TargetError as exc:
                log.info("[%s] could not kill served process %d: %s", self.device, self.pid, exc)
        if self.stream.open:
            try:
                self.stream.send(wire.encode_shell_packet(wire.SHELL_CLOSE_STDIN, b""), KILL_TIMEOUT_S)
            except TargetError:
                pass
            self.stream.close()
        self._ended = True

    def _next_line(self, deadline: float) -> str | None:
        """The next stdout line (without its newline); None at the end of the process's output."""
        while not self._lines:
            if self._ended:
                return None
            left = deadline - time.perf_counter()
            if left <= 0:
                raise StreamTimeout("no answer in time", self.device)
            data = self.stream.recv(left)
            if not data:
                self._ended = True
                continue
            self._take(data)
        return self._lines.pop(0)

    def _take(self, data: bytes) -> None:
        try:
            packets, self._raw = wire.iter_shell_packets(self._raw + data, MAX_LINE_BYTES)
        except wire.WireError as exc:
            self.stream.close()
            raise LinkLost(f"served {' '.join(self.argv)}: {exc}", self.device) from exc
        for ident, payload in packets:
            if ident in (wire.SHELL_STDOUT, wire.SHELL_STDERR):
                self._size += len(payload)
                if self._size > self.limit_bytes:  # a runner printing without end, before its time limit
                    self.close(kill=True)
                    raise PeerError(f"served {' '.join(self.argv)}: its answer exceeds the {self.limit_bytes}-"
                                    f"byte limit (LinkLimits.output_bytes)", self.device)
            if ident == wire.SHELL_STDOUT:
                *lines, self._partial = (self._partial + payload).split(b"\n")
                self._lines += [wire_text(raw) for raw in lines]
                if len(self._partial) > MAX_LINE_BYTES:
                    raise LinkLost(f"served {' '.join(self.argv)}: a line over {MAX_LINE_BYTES} bytes",
                                   self.device)
            elif ident == wire.SHELL_STDERR:
                self._err.append(payload)
            elif ident == wire.SHELL_EXIT:
                self._exit = payload[0] if payload else None
                self._ended = True


def wire_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class AdbShellStream:
    """A ``shell,v2,raw:`` stream on an ``adb_session.AdbSession``'s connection (adb-shell).

    Every operation holds the session's lock; the stream is dead once the session reconnects."""

    def __init__(self, session, command: str):
        from adb_shell import constants as adb_constants

        self._c = adb_constants
        self.session, self._unacked, self._closed = session, False, False
        what = f"serve {command!r}"
        with session._lock:
            self.device = session._connected(what)
            try:
                self.info = self.device._open(SHELL_V2_SERVE + b":" + command.encode(), STREAM_OPEN_TIMEOUT_S,
                                               STREAM_OPEN_TIMEOUT_S, None)
            except Exception as exc:  # adb-shell's tree and socket errors: the link is not usable
                session.drop_link()
                raise LinkLost(f"{what}: {bare(exc)}", session.name) from exc

    @property
    def open(self) -> bool:
        return not self._closed and self.session._device is self.device

    def send(self, data: bytes, timeout_s: float) -> None:
        from adb_shell.adb_message import AdbMessage

        with self.session._lock:
            self._check_open()
            while self._unacked:  # one WRTE in flight: wait for the device's OKAY (keep any output)
                self._read(timeout_s, pending=[])
            self._io(lambda: self.device._io_manager.send(
                AdbMessage(self._c.WRTE, self.info.local_id, self.info.remote_id, data), self.info), timeout_s)
            self._unacked = True

    def recv(self, timeout_s: float) -> bytes:
        with self.session._lock:
            if self._closed:
                return b""
            self._check_open()
            pending: list[bytes] = []
            while not pending and not self._closed:
                self._read(timeout_s, pending)
            return b"".join(pending)

    def close(self) -> None:
        if self.open:
            from adb_shell.adb_message import AdbMessage

            try:
                with self.session._lock:
                    self.device._io_manager.send(AdbMessage(self._c.CLSE, self.info.local_id,
                                                            self.info.remote_id), self.info)
            except Exception:  # closing over a broken link: the stream is gone either way
                pass
        self._closed = True

    def _check_open(self) -> None:
        if not self.open:
            self._closed = True
            raise LinkLost("the served stream's connection was replaced", self.session.name)

    def _read(self, timeout_s: float, pending: list[bytes]) -> None:
        """One packet of this stream: output into ``pending`` (acknowledged), OKAY, or CLSE."""
        c = self._c
        cmd, _, _, data = self._io(lambda: self.device._io_manager.read([c.OKAY, c.WRTE, c.CLSE], self.info,
                                                                        allow_zeros=True), timeout_s)
        if cmd == c.WRTE:
            pending.append(bytes(data))
            self._io(lambda: self.device._okay(self.info), timeout_s)
        elif cmd == c.OKAY:
            self._unacked = False
        else:
            self._closed = True

    def _io(self, op, timeout_s: float):
        from harness.targets.adb_link import LINK_ERRORS, TIMEOUT_ERRORS

        self.info.read_timeout_s = self.info.transport_timeout_s = max(timeout_s, 0.001)
        try:
            return op()
        except TIMEOUT_ERRORS as exc:  # maybe in the middle of a packet: the link is out of step
            self.session.drop_link()
            self._closed = True
            raise StreamTimeout(f"served stream: {bare(exc)}", self.session.name) from exc
        except LINK_ERRORS as exc:
            self.session.drop_link()
            self._closed = True
            raise LinkLost(f"served stream to {self.session.where}: {bare(exc)}", self.session.name) from exc


class ServerStream:
    """A ``shell,v2,raw:`` stream through the adb server (``adb_server.ServerSession``): its own
    socket to the server, so it never blocks the session's other requests."""

    def __init__(self, session, command: str):
        what = f"serve {command!r}"
        self.name = session.name

        def open_shell(d):  # an adbutils.AdbDevice (imported by adb_server, not here)
            conn = d.open_transport(timeout=STREAM_OPEN_TIMEOUT_S)
            try:
                conn.send_command(f"{SHELL_V2_SERVE.decode()}:{command}")
                conn.check_okay()
            except BaseException:
                conn.close()
                raise
            return conn
        self._conn = session.call(what, open_shell, idempotent=False)
        self._closed = False

    @property
    def open(self) -> bool:
        return not self._closed

    def send(self, data: bytes, timeout_s: float) -> None:
        self._io(lambda sock: sock.sendall(data), timeout_s)

    def recv(self, timeout_s: float) -> bytes:
        if self._closed:
            return b""
        data = self._io(lambda sock: sock.recv(RECV_BYTES), timeout_s)
        if not data:
            self._closed = True
        return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()

    def _io(self, op, timeout_s: float):
        sock = self._conn.conn
        try:
            sock.settimeout(max(timeout_s, 0.001))
            return op(sock)
        except socket.timeout as exc:
            raise StreamTimeout(f"served stream: {bare(exc)}", self.name) from exc
        except OSError as exc:
            self.close()
            raise LinkLost(f"served stream: {bare(exc)}", self.name) from exc
