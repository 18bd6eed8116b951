"""One client link of the simulated ADB device: CNXN, AUTH, and routing OPEN/OKAY/WRTE/CLSE to streams.

A ``Connection`` owns one TCP socket and its reader thread. It answers CNXN (with the device's
banner and the smaller of both maxdata values) and, on a device with ``auth``, the RSA AUTH dance;
it opens a ``streams.Stream`` for each OPEN whose service ``services.lookup`` knows and runs that
service on a device thread. Protocol rules kept (``devices-and-adb.md`` §8): real checksums sent,
none verified; magic checked; maxdata honoured both ways (a packet longer than 4096 bytes before the
host's CNXN, or than the negotiated maxdata after it, drops the link from its header, before the
payload is read or allocated; so does a host that floods a stream faster than its service reads); a host WRTE is acknowledged before any
reply on that stream; CLSE on a live stream is echoed; unknown services are refused with
CLSE(0, id); never STLS.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import threading
from typing import Callable

from harness.targets import adb_wire as wire
from harness.targets.adb_wire import A_AUTH, A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE
from harness.targets.simulate import auth as adb_auth
from harness.targets.simulate import services
from harness.targets.simulate.sandbox import DeviceSandbox
from harness.targets.simulate.streams import Closed, Stream

log = logging.getLogger(__name__)

STREAM_ID_LIMIT = 0x7FFFFFFF  # local stream ids wrap below this (adbd keeps them positive)
# Host bytes a stream may hold unread. adbd keeps one packet in flight per stream; services here
# read as fast as they can, so 16 maxdata-sized packets unread means a host that floods, not a slow disk.
STREAM_INBOX_MAX_BYTES = 16 * wire.MAX_PAYLOAD


class Connection:
    """One client link: reads messages, answers CNXN/AUTH, routes stream messages.

    ``on_close`` is called once with the connection when its reader ends (the device forgets it).
    """

    def __init__(self, device: DeviceSandbox, sock: socket.socket, peer: str,
                 on_close: Callable[["Connection"], None]):
        self.device = device
        self.sock = sock
        self.peer = peer
        self.maxdata = device.max_payload  # min(ours, the host's) once CNXN arrived
        self.max_read = wire.MAX_PAYLOAD_V1  # longest packet accepted: 4096 until CNXN, then maxdata
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
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
                if header.data_length > self.max_read:
                    raise wire.WireError(f"{header.name} payload of {header.data_length} bytes exceeds "
                                         f"the {self.max_read}-byte maximum")
                data = self._recv_exact(header.data_length) if header.data_length else b""
                self._dispatch(header, data)
        except wire.WireError as exc:
            log.warning("[%s] dropping %s: %s", self.device.serial, self.peer, exc)
        except (Closed, OSError):
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

    def unregister(self, stream: Stream) -> bool:
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
        shutdown_quietly(self.sock, socket.SHUT_RD)
        self._close_streams()

    # --- reading ----------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise Closed
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
                if stream.buffered() + len(data) > STREAM_INBOX_MAX_BYTES:
                    raise wire.WireError(f"stream {stream.local_id}: the host sent more than "
                                         f"{STREAM_INBOX_MAX_BYTES} bytes its service has not read")
                self.send(A_OKAY, stream.local_id, stream.remote_id)  # OKAY first, then the service sees it
                stream.feed(data)
        elif cmd == A_OKAY:
            stream = self._find(header.arg1, header.arg0)
            if stream is not None:
                stream.acknowledged()
        elif cmd == A_CLSE:
            self._on_close_stream(header)

    def _find(self, local_id: int, remote_id: int) -> Stream | None:
        with self._streams_lock:
            stream = self._streams.get(local_id)
        if stream is None or (remote_id and stream.remote_id != remote_id):
            return None
        return stream

    # --- CNXN and AUTH ----------------------------------------------------------------------

    def _on_connect(self, header: wire.Header, data: bytes) -> None:
        if self._online:  # a second CNXN resets the link, as adbd does
            self._close_streams()
            self._online = False
        self.maxdata = max(wire.MAX_PAYLOAD_V1, min(header.arg1, self.device.max_payload))
        self.max_read = self.maxdata
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

    # --- streams ----------------------------------------------------------------------------

    def _on_open(self, header: wire.Header, data: bytes) -> None:
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
            self._next_id = self._next_id % STREAM_ID_LIMIT + 1
            stream = Stream(self, local_id, header.arg0)
            self._streams[local_id] = stream
        self.send(A_OKAY, local_id, header.arg0)
        self.device.spawn_thread(self._serve, f"adb-sim-svc-{local_id}", service, stream)

    def _serve(self, service, stream: Stream) -> None:
        try:
            service(stream)
        except Closed:
            pass
        except Exception:  # a bug in a service must not take the device down
            log.exception("[%s] service failed", self.device.serial)
        finally:
            stream.finish()

    def _on_close_stream(self, header: wire.Header) -> None:
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
        self._on_close(self)


def shutdown_quietly(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    """``sock.shutdown(how)``, ignoring a socket that is already gone."""
    try:
        sock.shutdown(how)
    except OSError:
        pass
