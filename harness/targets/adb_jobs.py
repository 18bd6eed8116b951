"""Long jobs on an ADB device: started detached, polled with short commands, killed at their deadline.

A job runs in its own session (``setsid``, or the device's Python doing the same) with its stdout,
stderr and exit status written to files in its job folder; the host polls it with one tiny command
at a time (thinning out from 20 ms to one a second). A silent inference therefore never meets a
read timeout, and a dropped connection is reconnected and the same job polled again. At the job's
deadline its process group is killed. The same job still running from an earlier session (its host
died) is attached to, not started a second time.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
import time
from typing import Callable, Mapping, Sequence

from harness.errors import CommandTimeout, TargetError
from harness.targets.adb_files import AdbFiles
from harness.targets.adb_session import COMMAND_TIMEOUT_S, AdbSession, LinkLost, checked_argv, decode, shown
from harness.targets.process import CommandResult

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 30.0          # one poll of a detached job; a link silent for longer is reconnected
POLL_FIRST_S = 0.02            # a job of a few samples finishes in well under a second
POLL_MAX_S = 1.0               # longest wait between polls of a long job: one tiny command per second
POLL_GROWTH = 1.5              # polls thin out geometrically while a job runs
START_RECOVERY_S = 5.0         # after a drop during a start: how long the pid file may take to appear
PY_SETSID = "import os,sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"
# The detached job's files in its job folder, and the script that runs it and records its status.
DETACHED_OUT, DETACHED_ERR, DETACHED_EXIT = ".qskew-job.stdout", ".qskew-job.stderr", ".qskew-job.exit"
DETACHED_PID = ".qskew-job.pid"  # the job's process group id, written right after launch
DETACHED_SCRIPT = ('o=$1 e=$2 x=$3 d=$4; shift 4; cd "$d" && "$@" </dev/null >"$o" 2>"$e"; '
                   'echo $? >"$x.tmp"; mv -f "$x.tmp" "$x"')
# One poll: the exit status if the job ended, else "running" and the last line it printed.
POLL_SCRIPT = ('if [ -f "$1" ]; then echo "exit $(cat "$1")"; elif kill -0 "$2" 2>/dev/null; '
               'then echo running; tail -n 1 "$3" 2>/dev/null || true; elif [ -f "$1" ]; '
               'then echo "exit $(cat "$1")"; '
               'else echo gone; fi')


def job_files(job_dir: str) -> dict[str, str]:
    """Device paths of a job's stdout ("out"), stderr ("err"), exit status ("exit") and pid ("pid")."""
    return {key: posixpath.join(job_dir, name) for key, name in
            (("out", DETACHED_OUT), ("err", DETACHED_ERR), ("exit", DETACHED_EXIT), ("pid", DETACHED_PID))}


class DetachedJobs:
    """Detached jobs on the device of ``files.session``; ``python`` runs ``setsid`` where it is missing."""

    def __init__(self, files: AdbFiles, python: str):
        self.files = files
        self.session: AdbSession = files.session
        self.python = python
        self._setsid: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.session.name

    def run(self, argv: Sequence[str], job_dir: str, timeout_s: float, cwd: str | None = None,
            watch: Callable[[str], None] | None = None) -> CommandResult:
        """Run ``argv`` in its own session on the device and poll it until it exits.

        stdout, stderr and the exit status go to files in ``job_dir``; a dropped connection is
        reconnected and the job polled again. On timeout the job's process group is killed and
        CommandTimeout raised; a device that stays unreachable gives TargetError naming the command.
        """
        argv = checked_argv(argv, self.name)
        start = time.perf_counter()
        files = job_files(job_dir)
        pgid = self.start(argv, job_dir, cwd or job_dir, files)
        log.debug("[%s] started %s as process group %d", self.name, shown(argv), pgid)
        code = self._wait(argv, files, pgid, start + timeout_s, timeout_s, watch)
        out = self.files.read_small(files["out"], f"output of {shown(argv)}")
        err = self.files.read_small(files["err"], f"output of {shown(argv)}")
        return CommandResult(tuple(argv), code, decode(out), decode(err), time.perf_counter() - start)

    def start(self, argv: Sequence[str], job_dir: str, cwd: str, files: Mapping[str, str]) -> int:
        """Start ``argv`` detached (or attach to it if it still runs); its process group id."""
        script = self._start_script(argv, job_dir, cwd, files)
        try:
            result = self.session.check(["sh", "-c", script])
        except LinkLost as exc:  # did it start before the link went? its pid file says
            log.info("[%s] link lost while starting %s; looking for its pid file", self.name, shown(argv))
            return self._recover_start(argv, files, exc)
        match = re.search(r"QSKEW_PGID=(\d+)", result.stdout)
        if match is None:
            raise TargetError(f"starting {shown(argv)} in {job_dir} printed no process id: "
                              f"{result.stdout + result.stderr!r}", self.name)
        if "QSKEW_ATTACHED" in result.stdout:
            log.info("[%s] %s is still running from an earlier session (process %s): polling it",
                     self.name, shown(argv), match.group(1))
        return int(match.group(1))

    def _start_script(self, argv: Sequence[str], job_dir: str, cwd: str, files: Mapping[str, str]) -> str:
        inner = [*self._setsid_prefix(), "sh", "-c", DETACHED_SCRIPT, "qskew-job", files["out"], files["err"],
                 files["exit"], cwd, *argv]
        q = shlex.quote
        pid, pid_tmp = q(files["pid"]), q(files["pid"] + ".tmp")
        # The same job still running from an earlier session (its host died or was stopped): attach
        # to it instead of starting it twice. Its pid must still be the job's own shell (pids recycle).
        attach = (f"if [ ! -f {q(files['exit'])} ] && p=$(cat {pid} 2>/dev/null) && kill -0 \"$p\" 2>/dev/null "
                  f"&& tr '\\0' '\\n' </proc/\"$p\"/cmdline 2>/dev/null | grep -qxF {q(files['exit'])}; "
                  f"then echo \"QSKEW_PGID=$p QSKEW_ATTACHED\"; exit 0; fi; ")
        return (f"cd {q(job_dir)} || exit 97; {attach}rm -f {q(files['exit'])} {q(files['exit'] + '.tmp')} "
                f"{q(files['out'])} {q(files['err'])} {pid}; "
                f"{' '.join(q(a) for a in inner)} </dev/null >/dev/null 2>&1 & "
                f"echo $! >{pid_tmp} && mv -f {pid_tmp} {pid} && echo \"QSKEW_PGID=$!\"")

    def _recover_start(self, argv: Sequence[str], files: Mapping[str, str], exc: TargetError) -> int:
        """The job's process group from its pid file, written right after launch; reconnects."""
        deadline = time.perf_counter() + START_RECOVERY_S
        while True:
            text = self.files.read_small(files["pid"], f"start of {shown(argv)}").strip()
            if text.isdigit():
                return int(text)
            if time.perf_counter() > deadline:
                raise TargetError(f"the link dropped while starting {shown(argv)} and it left no "
                                  f"pid file {files['pid']}: not started ({exc})", self.name) from exc
            time.sleep(POLL_FIRST_S)

    def _setsid_prefix(self) -> tuple[str, ...]:
        """``setsid`` when the device has it, else the device's Python doing the same."""
        if self._setsid is None:
            probe = self.session.run(["sh", "-c", "command -v setsid"], timeout_s=COMMAND_TIMEOUT_S)
            self._setsid = (("setsid",) if probe.returncode == 0 and probe.stdout.strip()
                            else (self.python, "-c", PY_SETSID))
        return self._setsid

    def _wait(self, argv: Sequence[str], files: Mapping[str, str], pgid: int,
              deadline: float, timeout_s: float, watch: Callable[[str], None] | None) -> int:
        what = f"polling {shown(argv)} (process group {pgid})"
        delay = POLL_FIRST_S
        while True:
            reply = self.session.run_retrying(["sh", "-c", POLL_SCRIPT, "qskew-poll", files["exit"], str(pgid),
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
                raise TargetError(f"{shown(argv)} (process group {pgid}) ended without an exit "
                                  f"status: killed, or the device rebooted?", self.name)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._kill_group(pgid, argv)
                output = self.files.read_small(files["out"], what) + self.files.read_small(files["err"], what)
                raise CommandTimeout(list(argv), timeout_s, decode(output), self.name)
            time.sleep(min(delay, remaining))
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)

    def _kill_group(self, pgid: int, argv: Sequence[str]) -> None:
        script = 'kill -9 -"$1" 2>/dev/null || kill -9 "$1" 2>/dev/null; true'
        self.session.run_retrying(["sh", "-c", script, "qskew-kill", str(pgid)], f"killing {shown(argv)}")
        log.warning("[%s] killed %s (process group %d) after its timeout", self.name, shown(argv), pgid)
