"""The ``sync:`` service of the simulated ADB device: STAT/STA2/LST2, LIST/LIS2, SEND, RECV, QUIT.

Sync follows adbd 29 (``daemon/file_sync_service.cpp``, ``devices-and-adb.md`` §3), with one
deliberate difference: on a SEND error the FAIL record is sent once the host's DONE has been drained,
not at once. adb-shell silently drops a WRTE that arrives while it waits for an OKAY, so an early
FAIL would be lost and the push would hang; adb 29 reads the status only after DONE anyway.

Device paths map onto the host through ``DeviceSandbox.host_path`` (``/`` is the device's ``root``)
and only /data/local/tmp is served; a path that resolves (``..``, symlinks, read on the host)
outside it is refused with "Permission denied". A device's ``disk_quota_bytes`` makes a
SEND beyond it fail with "No space left on device"; an armed ``vanish_after("push"|"pull")`` fires
here, counted in DATA bytes.
"""

from __future__ import annotations

import errno
import os
import stat

from harness.targets import adb_wire as wire
from harness.targets.simulate.sandbox import DeviceSandbox
from harness.targets.simulate.streams import Closed, Stream

SEND_DIR_MODE = 0o775  # parent folders SEND creates (adbd secure_mkdirs)


def serve_sync(device: DeviceSandbox, stream: Stream) -> None:
    """The ``sync:`` service: requests until QUIT, an error, or the host closing the stream."""
    _SyncSession(device, stream).run()


class _Vanish(Closed):
    """An armed ``vanish_after`` fault fired inside a sync request."""


class _SyncSession:
    """One ``sync:`` stream. Replies are buffered and sent in WRTEs of maxdata before any read
    that would wait, so records straddle WRTEs exactly as with adbd."""

    def __init__(self, device: DeviceSandbox, stream: Stream):
        self.device = device
        self.stream = stream
        self.root = device.sync_root  # the folder sync may touch: the device's /data/local/tmp
        self.out = bytearray()
        self.handlers = {wire.ID_STAT: self._stat_v1, wire.ID_STA2: self._stat_v2, wire.ID_LST2: self._stat_v2,
                         wire.ID_LIST: self._list, wire.ID_LIS2: self._list,
                         wire.ID_SEND: self._send, wire.ID_RECV: self._recv}

    def run(self) -> None:
        try:
            self._serve_requests()
            self.flush()
        except _Vanish:  # an armed fault fired; the half-received file is already gone
            self.device.vanish()

    def _serve_requests(self) -> None:
        while True:
            ident, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
            if ident == wire.ID_QUIT:
                return
            handler = self.handlers.get(ident)
            if handler is None:
                self._fail(f"unknown command {ident:08x}")
                return
            if length > wire.SYNC_PATH_MAX:
                self._fail("path too long")
                return
            if not handler(ident, self._read(length)):
                return

    # --- buffered I/O ---

    def _read(self, n: int) -> bytes:
        if self.stream.buffered() < n:
            self.flush()  # the host may be waiting for our answer before it sends more
        return self.stream.read_exact(n)

    def _add(self, data: bytes) -> None:
        self.out += data
        limit = self.stream.conn.maxdata
        if len(self.out) >= limit:
            cut = len(self.out) - len(self.out) % limit
            self._write(bytes(self.out[:cut]))
            del self.out[:cut]

    def flush(self) -> None:
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            self._write(data)

    def _write(self, data: bytes) -> None:
        if not self.stream.write(data):
            raise Closed

    def _fail(self, message: str) -> bool:
        self.out += wire.sync_record(wire.ID_FAIL, message.encode("utf-8", errors="replace"))
        return False

    def _vanish_if_due(self, stage: str, nbytes: int) -> None:
        if self.device.fault_due(stage, nbytes):
            self.flush()
            raise _Vanish

    # --- paths ---

    def _resolve(self, raw: bytes, follow: bool) -> str | None:
        """Host path of a device path (relative paths are under /data/local/tmp), or None
        if it lies outside /data/local/tmp once ``..`` and symlinks are resolved (the last component's link
        is followed only when ``follow``)."""
        if b"\0" in raw or not raw:
            return None
        joined = self.device.host_path(os.fsdecode(raw))
        head, name = os.path.split(joined)
        if name in ("", ".", ".."):
            host = os.path.realpath(joined)
        else:
            host = os.path.join(os.path.realpath(head), name)
        if not self._inside(host) or (follow and not self._inside(os.path.realpath(host))):
            return None
        return host

    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    # --- STAT / STA2 / LST2 ---

    def _stat_v1(self, _ident: int, raw: bytes) -> bool:
        host = self._resolve(raw, follow=False)
        try:
            st = os.lstat(host) if host else None
        except OSError:
            st = None
        if st is None:  # v1 has no error field: all zeros means "not found"
            self._add(wire.SYNC_STAT_V1.pack(wire.ID_STAT, 0, 0, 0))
        else:
            self._add(wire.SYNC_STAT_V1.pack(wire.ID_STAT, st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                             int(st.st_mtime) & 0xFFFFFFFF))
        return True

    def _stat_v2(self, ident: int, raw: bytes) -> bool:
        follow = ident == wire.ID_STA2
        host = self._resolve(raw, follow=follow)
        try:
            if host is None:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            st = os.stat(host) if follow else os.lstat(host)
        except OSError as exc:
            self._add(wire.SYNC_STAT_V2.pack(ident, exc.errno or errno.EIO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return True
        self._add(wire.SYNC_STAT_V2.pack(ident, 0, *_stat_v2_fields(st)))
        return True

    # --- LIST / LIS2 ---

    def _list(self, ident: int, raw: bytes) -> bool:
        v2 = ident == wire.ID_LIS2
        host = self._resolve(raw, follow=True)
        names: list[bytes] = []
        if host is not None:
            try:
                names = [b".", b".."] + os.listdir(os.fsencode(host))
            except OSError:
                names = []  # adbd sends just DONE for a folder it cannot open
        for name in names:
            try:
                st = os.lstat(os.path.join(os.fsencode(host), name))
            except OSError:
                continue
            if v2:
                self._add(wire.SYNC_DENT_V2.pack(wire.ID_DNT2, 0, *_stat_v2_fields(st), len(name)) + name)
            else:
                self._add(wire.SYNC_DENT_V1.pack(wire.ID_DENT, st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                 int(st.st_mtime) & 0xFFFFFFFF, len(name)) + name)
        if v2:
            self._add(wire.SYNC_DENT_V2.pack(wire.ID_DONE, *([0] * 12)))
        else:
            self._add(wire.SYNC_DENT_V1.pack(wire.ID_DONE, 0, 0, 0, 0))
        return True

    # --- RECV ---

    def _recv(self, _ident: int, raw: bytes) -> bool:
        host = self._resolve(raw, follow=True)
        if host is None:
            return self._fail(f"open failed: {os.strerror(errno.EACCES)}")
        try:
            fh = open(host, "rb", buffering=0)
        except OSError as exc:
            return self._fail(f"open failed: {exc.strerror}")
        with fh:
            while True:
                try:
                    chunk = fh.read(wire.SYNC_RECV_CHUNK)
                except OSError as exc:
                    return self._fail(f"read failed: {exc.strerror}")
                if not chunk:
                    break
                self._add(wire.sync_record(wire.ID_DATA, chunk))
                self._vanish_if_due("pull", len(chunk))
        self._add(wire.sync_record(wire.ID_DONE, length=0))
        return True

    # --- SEND ---

    def _send(self, _ident: int, raw: bytes) -> bool:
        path, comma, mode_text = raw.rpartition(b",")
        if not comma:
            return self._drain_then_fail("missing , in ID_SEND")
        mode = _strtoul(mode_text)
        host = self._resolve(path, follow=False)
        if host is None:
            return self._drain_then_fail(f"couldn't create file: {os.strerror(errno.EACCES)}")
        if stat.S_ISLNK(mode):
            return self._send_symlink(host)
        return self._send_file(host, _device_file_mode(mode))

    def _drain_then_fail(self, message: str) -> bool:
        """Read the host's DATA records up to DONE, then send FAIL (see the module docstring)."""
        while True:
            ident, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
            if ident != wire.ID_DATA or length > wire.SYNC_DATA_MAX:
                break
            self._read(length)
        return self._fail(message)

    def _send_file(self, host: str, mode: int) -> bool:
        try:
            fd = _create_file(host)
        except OSError as exc:
            return self._drain_then_fail(f"couldn't create file: {exc.strerror}")
        done = False
        try:
            os.fchmod(fd, mode)
            error, mtime = self._receive_data(fd)
            done = error is None
        finally:
            os.close(fd)
            if not done:
                _unlink_quietly(host)
        if error is not None:
            return self._fail(error)
        os.utime(host, (mtime, mtime), follow_symlinks=False)
        self._add(wire.SYNC_REQUEST.pack(wire.ID_OKAY, 0))
        return True

    def _receive_data(self, fd: int) -> tuple[str | None, int]:
        """Write DATA records to ``fd`` until DONE: (error message or None, mtime from DONE).
        After a write error the rest is drained; a framing error ends at once (as adbd)."""
        budget = self._free_bytes()
        written, error = 0, None
        while True:
            ident, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
            if ident == wire.ID_DONE:
                return error, length
            if ident != wire.ID_DATA:
                return "invalid data message: expected ID_DATA", 0
            if length > wire.SYNC_DATA_MAX:
                return "oversize data message", 0
            data = self._read(length)
            if error is None:
                if budget is not None and written + length > budget:
                    error = f"write failed: {os.strerror(errno.ENOSPC)}"
                else:
                    error = _write_all(fd, data)
                written += length
            self._vanish_if_due("push", length)

    def _send_symlink(self, host: str) -> bool:
        target = bytearray()
        while True:
            ident, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
            if ident == wire.ID_DONE:
                break
            if ident != wire.ID_DATA or length > wire.SYNC_DATA_MAX:
                return self._fail("invalid data message")
            target += self._read(length)
        try:
            _unlink_quietly(host)
            os.makedirs(os.path.dirname(host), SEND_DIR_MODE, exist_ok=True)
            os.symlink(bytes(target), host)
        except OSError as exc:
            return self._fail(f"symlink failed: {exc.strerror}")
        self._add(wire.SYNC_REQUEST.pack(wire.ID_OKAY, 0))
        return True

    def _free_bytes(self) -> int | None:
        quota = self.device.disk_quota_bytes
        if quota is None:
            return None
        return max(0, quota - _tree_size_bytes(self.root))


def _stat_v2_fields(st: os.stat_result) -> tuple:
    """dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime of a stat_v2 record."""
    return (st.st_dev, st.st_ino, st.st_mode & 0xFFFFFFFF, st.st_nlink & 0xFFFFFFFF, st.st_uid & 0xFFFFFFFF,
            st.st_gid & 0xFFFFFFFF, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def _strtoul(text: bytes) -> int:
    """C ``strtoul(text, nullptr, 0)``: decimal, 0-prefixed octal or 0x hex; garbage gives 0."""
    s = text.strip().decode("ascii", errors="replace")
    try:
        if s[:2].lower() == "0x":
            return int(s[2:], 16)
        if s.startswith("0") and len(s) > 1:
            return int(s, 8)
        return int(s, 10)
    except ValueError:
        return 0


def _device_file_mode(mode: int) -> int:
    """adbd's rule: keep the permission bits and copy the user bits to group and other."""
    mode &= 0o777
    mode |= (mode >> 3) & 0o070
    mode |= (mode >> 3) & 0o007
    return mode


def _create_file(host: str) -> int:
    """Replace a regular file or symlink at ``host`` with a new empty file; create parent folders."""
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        os.unlink(host)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(host, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(host), SEND_DIR_MODE, exist_ok=True)
        return os.open(host, flags, 0o600)


def _write_all(fd: int, data: bytes) -> str | None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        return f"write failed: {exc.strerror}"
    return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _tree_size_bytes(root: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
