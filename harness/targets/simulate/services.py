"""The services of the simulated ADB device: which one an OPEN names, and ``shell:``/``exec:``.

``lookup`` maps an OPEN payload to a service: ``shell:`` (v1, merged output), ``shell,v2,...:``
(shell protocol v2: separate stdout/stderr packets and the exit code), ``exec:`` (raw, like v1) or
``sync:`` (``sync.serve_sync``). Each service runs on its own device thread with a
``streams.Stream``: it reads the host's bytes with ``read_exact``/``read_some`` (records may
straddle WRTEs) and answers with ``write``, which cuts at maxdata and keeps one WRTE in flight.
"""

from __future__ import annotations

import os
import subprocess
from functools import partial
from typing import Callable

from harness.targets import adb_wire as wire
from harness.targets.simulate.sandbox import DeviceSandbox
from harness.targets.simulate.streams import Stream
from harness.targets.simulate.sync import serve_sync

EXIT_SIGNAL_BASE = 128  # exit byte of a killed process: 128 + signal, as adbd reports it
INTERACTIVE_SHELL = "exec sh"  # `adb shell` with no command: a shell reading commands from stdin


def lookup(device: DeviceSandbox, name: str) -> Callable[[Stream], None] | None:
    """The service for an OPEN payload (NULs stripped), or None to refuse it with CLSE."""
    if name.startswith("shell:"):
        return partial(serve_shell, device, name[len("shell:"):], False)
    if name.startswith("shell,"):
        if "shell_v2" not in device.features:
            return None  # an old adbd does not know "shell,<args>:"
        args, _, command = name[len("shell,"):].partition(":")
        return partial(serve_shell, device, command, "v2" in args.split(","))
    if name.startswith("exec:"):
        return partial(serve_shell, device, name[len("exec:"):], False)
    if name == "sync:":
        return partial(serve_sync, device)
    return None


# --- shell --------------------------------------------------------------------------------------

def serve_shell(device: DeviceSandbox, command: str, protocol: bool, stream: Stream) -> None:
    """Run ``sh -c command``; raw merged output (v1/exec) or shell-v2 packets with the exit code."""
    try:
        proc = device.spawn_shell(command or INTERACTIVE_SHELL, merge_stderr=not protocol)
    except OSError as exc:
        message = f"sh: cannot start: {exc.strerror}\n".encode()
        if protocol:
            stream.write(wire.encode_shell_packet(wire.SHELL_STDERR, message)
                         + wire.encode_shell_packet(wire.SHELL_EXIT, bytes([127])))
        else:
            stream.write(message)
        return
    device.spawn_thread(_feed_stdin, f"adb-sim-stdin-{proc.pid}", stream, proc, protocol)
    if protocol:
        err_pump = device.spawn_thread(_pump, f"adb-sim-stderr-{proc.pid}", stream, proc.stderr, wire.SHELL_STDERR)
        _pump(stream, proc.stdout, wire.SHELL_STDOUT)
        err_pump.join()
    else:
        _pump(stream, proc.stdout, None)
    code = proc.wait()
    if protocol:
        stream.write(wire.encode_shell_packet(wire.SHELL_EXIT, bytes([_exit_byte(code)])))


def _exit_byte(returncode: int) -> int:
    return (EXIT_SIGNAL_BASE - returncode if returncode < 0 else returncode) & 0xFF


def _pump(stream: Stream, pipe, ident: int | None) -> None:
    """Copy a process pipe to the stream (as v2 packets of id ``ident``, or raw); after the stream
    closes keep draining so the process never blocks on a full pipe."""
    fd = pipe.fileno()
    header = 0 if ident is None else wire.SHELL_HEADER.size
    try:
        while True:
            data = os.read(fd, max(1, stream.conn.maxdata - header))
            if not data:
                return
            if not stream.closed:
                stream.write(data if ident is None else wire.encode_shell_packet(ident, data))
    finally:
        pipe.close()


def _feed_stdin(stream: Stream, proc: subprocess.Popen, protocol: bool) -> None:
    """Host bytes to the process's stdin: raw, or v2 packets (0 stdin, 4 close stdin, 5 ignored)."""
    pending = b""
    try:
        while True:
            data = stream.read_some()
            if not data:
                return
            if not protocol:
                _write_stdin(proc, data)
                continue
            packets, pending = wire.iter_shell_packets(pending + data, max_length=wire.MAX_PAYLOAD)
            for ident, payload in packets:
                if ident == wire.SHELL_STDIN:
                    _write_stdin(proc, payload)
                elif ident == wire.SHELL_CLOSE_STDIN:
                    proc.stdin.close()
    except (OSError, ValueError):  # the process is gone, its stdin is closed, or a packet is oversized
        # (wire.WireError is a ValueError: the host's stdin ends there)
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _write_stdin(proc: subprocess.Popen, data: bytes) -> None:
    proc.stdin.write(data)
    proc.stdin.flush()
