"""One running confined device that many commands enter: what a simulated ADB device keeps open.

Why: :func:`confine.sandbox_command` gives each command its own namespaces, and its device dies
with it (``--kill-child``). A device's shells must share one device, as on a phone: a job started
detached (``setsid``) by one ``adb shell`` keeps running after it, and later shells see it in
``/proc`` by its PID. So a session starts the device once (its PID 1 is a small shell loop that
reaps orphans) and :meth:`ConfinedSession.command` enters that device's namespaces (user, if it
has one, mount, PID, UTS) and its root with ``nsenter``. :meth:`ConfinedSession.stop` kills the
device's PID 1, and so every process in it.

Example::

    session = ConfinedSession(confinement).start()
    cmd = session.command(["ls", "/"])
    run_command(cmd.argv, timeout_s=60, env=cmd.env).stdout   # 'bin\\ndata\\ndev\\n...'
    session.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

from harness.targets.confine import (DATA_MOUNT, Confinement, SandboxCommand, check_namespaces,
                                     sandbox_command, setup_failure)
from harness.targets.process import CommandResult

START_TIMEOUT_S = 60.0  # the device's PID 1 is up once it has entered the root (a few seconds)
POLL_S = 0.01
REAP_INTERVAL_S = 2  # how often PID 1 wakes to reap orphans (on a board each wake is an emulated `sleep`)
INIT_SCRIPT = f"trap 'exit 0' TERM; while :; do sleep {REAP_INTERVAL_S}; done"


class ConfinedSession:
    """A confined device kept running for its lifetime; see the module docstring."""

    def __init__(self, conf: Confinement, what: str = "the device"):
        self.conf = conf
        self.what = what
        self._proc: subprocess.Popen | None = None
        self._init_pid: int | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "ConfinedSession":
        """Start the device's PID 1 and wait until it is inside the root; a failed setup raises."""
        if self.running:
            return self
        check_namespaces(self.what, self.conf.error)
        cmd = sandbox_command(self.conf, ["/bin/sh", "-c", INIT_SCRIPT], as_init=True)
        env = {"PATH": os.environ.get("PATH", os.defpath), **cmd.env}
        self._proc = subprocess.Popen(cmd.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)
        self._init_pid = self._wait_for_init()
        return self

    def _wait_for_init(self) -> int:
        root = os.path.realpath(self.conf.root)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                stderr = self._proc.stderr.read().decode(errors="replace")
                done = CommandResult(["init"], self._proc.returncode, "", stderr, 0.0)
                failure = setup_failure(done, self.conf.mark, self.conf.error, self.what)
                raise failure or self.conf.error(f"{self.what}'s init exited at once ({self._proc.returncode}): "
                                                 f"{stderr.strip()[-300:]}")
            pid = _child_pid(self._proc.pid)
            if pid is not None and _root_of(pid) == root:
                self._proc.stderr.close()
                return pid
            time.sleep(POLL_S)
        self.stop()
        raise self.conf.error(f"{self.what} ({self.conf.root}) did not start within {START_TIMEOUT_S:.0f} s")

    def command(self, argv: Sequence[str], *, cwd: str = DATA_MOUNT,
                env: Mapping[str, str] | None = None) -> SandboxCommand:
        """The host argv that runs ``argv`` inside the running device (its root, /proc and PIDs)."""
        if not self.running or self._init_pid is None:
            raise self.conf.error(f"{self.what} ({self.conf.root}) is not running (start the session first)")
        inner = self.conf.inner(argv, cwd, env)
        user = ["--user"] if self.conf.in_user_ns else []
        outer = ["nsenter", "--target", str(self._init_pid), *user, "--mount", "--pid", "--uts", "--root"]
        return SandboxCommand(tuple(outer + inner), {"LC_ALL": "C"})

    @property
    def init_pid(self) -> int | None:
        """The host PID of the device's PID 1 (None when not running)."""
        return self._init_pid if self.running else None

    def stop(self) -> None:
        """Kill the device's PID 1 (and with it every process of the device). Idempotent."""
        proc, self._proc, self._init_pid = self._proc, None, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if proc.stderr is not None and not proc.stderr.closed:
            proc.stderr.close()


def _child_pid(pid: int) -> int | None:
    """The first child of ``pid`` (unshare's forked PID 1 of the device), or None yet."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = fh.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _root_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None
