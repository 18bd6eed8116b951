"""The stream primitive of the simulated ADB device: one OPENed service stream and its end signal.

Both the connection layer (``connection``) and the services (``services``, ``sync``) use these, so
they live below both: the connection feeds a ``Stream`` what the host writes and wakes it on OKAY
and CLSE; a service reads from it and answers through it. A ``Stream`` talks back to its link only
through three calls (``maxdata``, ``send``, ``unregister``), so this module imports no other part of
the simulator.
"""

from __future__ import annotations

import threading
from typing import Protocol

from harness.targets.adb_wire import A_CLSE, A_WRTE


class Closed(Exception):
    """A stream or connection is gone; the service or reader stops quietly."""


class Link(Protocol):
    """What a stream needs from its connection."""

    maxdata: int

    def send(self, command: int, arg0: int, arg1: int, data: bytes | memoryview = b"") -> bool: ...

    def unregister(self, stream: "Stream") -> bool: ...


class Stream:
    """One OPENed service stream: inbound byte buffer, outbound WRTEs with one in flight."""

    def __init__(self, conn: Link, local_id: int, remote_id: int):
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
        """Exactly ``n`` inbound bytes; raises Closed if the stream ends first."""
        with self._cond:
            while len(self._inbox) < n and not self._input_closed:
                self._cond.wait()
            if len(self._inbox) < n:
                raise Closed
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
