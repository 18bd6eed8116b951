"""Files on an ADB device: push and pull whole or not at all, stat, sha256, mkdir -p.

Built on one ``adb_session.AdbSession``. A push goes through sync ``SEND`` to a temp name next to
the destination, then ``mv``, so a content-addressed name never holds a partial file; a pull lands
in a temp file next to the local destination and is renamed into place. Hashes come from the
device's own tool: ``sha256sum`` (or ``toybox``/``busybox sha256sum``, ``openssl``, the device's
Python), the first one that hashes ``/dev/null`` right. Every error names the device and the path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import secrets
import stat as stat_mod
from pathlib import Path

from adb_shell import exceptions as adb_exc
from adb_shell.adb_device import AdbDevice

from harness.errors import CommandFailed, TargetError
from harness.fsutil import atomic_write
from harness.targets.adb_link import FileSink, FileSource
from harness.targets.adb_session import COMMAND_TIMEOUT_S, AdbSession, bare
from harness.targets.base import RemoteStat

log = logging.getLogger(__name__)

TRANSFER_READ_TIMEOUT_S = 60.0  # longest silence inside one push/pull (one packet's round trip)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # what a working tool prints for /dev/null
# Hash tools tried in order (argv prefix; the path is appended). The device's Python comes last.
SHA256_TOOLS = (("sha256sum",), ("toybox", "sha256sum"), ("busybox", "sha256sum"),
                ("openssl", "dgst", "-sha256", "-r"))
PY_SHA256 = ("import hashlib,sys\nh=hashlib.sha256()\nwith open(sys.argv[1],'rb') as f:\n"
             " for b in iter(lambda: f.read(1<<20), b''): h.update(b)\nprint(h.hexdigest())")
MOVE_SCRIPT = 'if [ -e "$1" ]; then mv -f "$1" "$2"; fi && [ -e "$2" ]'  # safe to repeat after a drop


class AdbFiles:
    """File operations on the device of ``session``; ``python`` is the device's interpreter (the
    hash tool of last resort)."""

    def __init__(self, session: AdbSession, python: str):
        self.session = session
        self.python = python
        self._sha256_argv: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.session.name

    def staged_push(self, local: Path, remote: str) -> tuple[Path, str, int, str]:
        """(local, what, its mode, a temp name next to ``remote``) for a push that ``mv``s into place."""
        local = Path(local)
        what = f"push {local} -> {remote}"
        try:
            mode = stat_mod.S_IMODE(os.stat(local).st_mode)
        except OSError as exc:
            raise TargetError(f"{what}: cannot read local file: {exc}", self.name) from exc
        tmp = posixpath.join(posixpath.dirname(remote) or ".",
                             f".{posixpath.basename(remote)}.{secrets.token_hex(6)}.part")
        return local, what, mode, tmp

    def push(self, local: Path, remote: str) -> None:
        """Push through a temp name next to ``remote`` and ``mv`` it into place."""
        local, what, mode, tmp = self.staged_push(local, remote)

        def op(device: AdbDevice) -> None:
            with FileSource(local) as source:
                device.push(source, tmp, st_mode=stat_mod.S_IFREG | mode,
                            read_timeout_s=TRANSFER_READ_TIMEOUT_S)
        try:
            try:
                self.session.call(what, op, idempotent=True)
            except adb_exc.PushFailedError as exc:
                self.session.drop_link()  # adb-shell leaves the failed sync stream open
                raise TargetError(f"{what} failed on the device: {_push_message(exc)}", self.name) from exc
            self.session.run_retrying(["sh", "-c", MOVE_SCRIPT, "qskew-mv", tmp, remote], f"mv {tmp} {remote}")
        except TargetError:
            self._discard(tmp)
            raise

    def _discard(self, remote: str) -> None:
        """Best-effort removal of a temp file after a failed push (skipped when the link is down)."""
        if not self.session.linked:
            return
        try:
            self.session.run(["rm", "-f", remote], timeout_s=COMMAND_TIMEOUT_S)
        except TargetError as exc:
            log.debug("[%s] could not remove %s: %s", self.name, remote, exc)

    def pull(self, remote: str, local: Path) -> None:
        """Pull into a temp file next to ``local`` and rename it into place (harness.fsutil); a
        file larger than the link's ``pull_bytes`` limit is refused as it arrives."""
        local = Path(local)
        what = f"pull {remote} -> {local}"

        def pull_into(tmp: Path) -> None:
            def op(device: AdbDevice) -> None:
                with FileSink(tmp, limit_bytes=self.session.limits.pull_bytes, device=self.name,
                              what=what) as sink:
                    device.pull(remote, sink, read_timeout_s=TRANSFER_READ_TIMEOUT_S)
            try:
                self.session.call(what, op, idempotent=True)
            except adb_exc.AdbCommandFailureException as exc:
                raise TargetError(f"{what} failed on the device: {bare(exc)}", self.name) from exc

        try:
            local.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(f"{what}: cannot write local file: {exc}", self.name) from exc
        atomic_write(local, pull_into, error=lambda msg: TargetError(f"{what}: {msg}", self.name))

    def read_small(self, remote: str, what: str) -> bytes:
        """A small remote file's bytes through sync (b"" if it does not exist); ``what`` says why."""
        def op(device: AdbDevice) -> bytes:
            sink = FileSink(None, limit_bytes=self.session.limits.output_bytes, device=self.name,
                            what=f"pull {remote} ({what})")
            try:
                device.pull(remote, sink, read_timeout_s=TRANSFER_READ_TIMEOUT_S)
            except adb_exc.AdbCommandFailureException:
                return b""
            return sink.getvalue()
        return self.session.call(f"pull {remote} ({what})", op, idempotent=True)

    def stat(self, remote: str) -> RemoteStat | None:
        mode, size, mtime = self.session.call(
            f"stat {remote}", lambda d: d.stat(remote, read_timeout_s=COMMAND_TIMEOUT_S), idempotent=True)
        if mode == 0:  # sync STAT v1 answers all zeros for a missing path
            return None
        return RemoteStat(size_bytes=size, mode=mode, mtime=mtime)

    def sha256(self, remote: str) -> str | None:
        """The device's own hash of ``remote`` (one round trip; a failure asks stat why)."""
        argv = [*self.sha256_tool(), remote]
        try:
            out = self.session.run_retrying(argv, f"sha256 of {remote}")
        except CommandFailed:
            if self.stat(remote) is None:
                return None
            raise
        digest = _first_hex_digest(out)
        if digest is None:
            raise TargetError(f"sha256 of {remote}: unexpected output {out.strip()[:200]!r}", self.name)
        return digest

    def sha256_tool(self) -> tuple[str, ...]:
        """The first hash tool that hashes /dev/null correctly (asked once per device)."""
        if self._sha256_argv is not None:
            return self._sha256_argv
        candidates = [*SHA256_TOOLS, (self.python, "-c", PY_SHA256)]
        for tool in candidates:
            result = self.session.run([*tool, "/dev/null"], timeout_s=COMMAND_TIMEOUT_S)
            if result.returncode == 0 and _first_hex_digest(result.stdout) == EMPTY_SHA256:
                self._sha256_argv = tool
                return tool
        tried = ", ".join(" ".join(t[:2]) for t in candidates)
        raise TargetError(f"no working sha256 tool on {self.session.where} (tried {tried})", self.name)

    def mkdirs(self, remote: str) -> None:
        self.session.run_retrying(["mkdir", "-p", remote], f"mkdir -p {remote}")


def _first_hex_digest(text: str) -> str | None:
    """The digest at the start of a hash tool's output (GNU prefixes "\\" when the name is escaped)."""
    match = re.match(r"\s*\\?([0-9a-fA-F]{64})\b", text or "")
    return match.group(1).lower() if match else None


def _push_message(exc: adb_exc.PushFailedError) -> str:
    msg = exc.args[0] if exc.args else ""
    return bytes(msg).decode("utf-8", errors="replace") if isinstance(msg, (bytes, bytearray)) else str(msg)
