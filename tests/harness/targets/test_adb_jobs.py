"""harness/targets/adb_jobs.py: detached jobs through AdbTarget against the simulated device: they
outlive dropped links and their host, are killed at their deadline, and a vanished device is named."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TargetError
from harness.targets.adb_jobs import POLL_SCRIPT, job_files
from support.adb_sim import device_path, host_pid, process_alive, when

LEGACY = {"features": ()}  # a device without shell_v2 (Android < 7): exit codes through a marker


def workdir(sim) -> Path:
    return sim.root / "data" / "local" / "tmp" / "qskew"


def test_a_detached_job_outlives_dropped_connections(simulated, adb_target):
    sim = simulated()
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "j 1"
    target.mkdirs(device_path(sim, job))
    started = job / "started"

    def drop_twice():
        sim.drop_connections()
        time.sleep(0.4)
        sim.drop_connections()
    dropper = when(started.exists, drop_twice)
    result = target.run_detached(["sh", "-c", "touch started; sleep 1.5; echo done; echo warn >&2; exit 4"],
                                 device_path(sim, job), timeout_s=60)
    dropper.join()
    assert result.returncode == 4 and result.stdout == "done\n" and result.stderr == "warn\n"
    assert target.reconnects >= 1


def test_a_job_still_running_from_an_earlier_session_is_attached_not_started_twice(simulated, adb_target):
    sim = simulated()
    job = workdir(sim) / "jobs" / "j 2"
    argv = ["sh", "-c", "echo start >> starts; sleep 1; echo done; exit 3"]
    first = adb_target(sim, name="host-that-died")
    first.mkdirs(device_path(sim, job))
    dev = device_path(sim, job)
    first._jobs.start(argv, dev, dev, job_files(dev))  # its host then goes away without polling
    first.close()
    result = adb_target(sim, name="next-session").run_detached(argv, dev, timeout_s=60)
    assert (result.returncode, result.stdout) == (3, "done\n")
    assert (job / "starts").read_text() == "start\n"  # one run, not two
    again = adb_target(sim, name="later").run_detached(argv, dev, timeout_s=60)  # finished: runs anew
    assert again.returncode == 3 and (job / "starts").read_text() == "start\nstart\n"


def test_a_link_dropped_while_the_job_starts_finds_the_job_by_its_pid_file(simulated, adb_target):
    sim = simulated()
    slow_mv = sim.root / "system" / "bin" / "mv"  # first on the device's PATH: the start's reply comes late
    slow_mv.write_text('#!/bin/sh\nsleep 1\nexec /bin/mv "$@"\n')
    slow_mv.chmod(0o755)
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "j2"
    target.mkdirs(device_path(sim, job))
    dropper = when((job / "started").exists, sim.drop_connections)  # the job runs; its start is unanswered
    result = target.run_detached(["sh", "-c", "touch started; sleep 0.5; echo ok"], device_path(sim, job), timeout_s=60)
    dropper.join()
    assert result.returncode == 0 and result.stdout == "ok\n" and target.reconnects >= 1


@pytest.mark.parametrize("options", [{}, LEGACY], ids=["shell_v2", "legacy"])
def test_a_detached_job_past_its_timeout_is_killed_with_its_children(options, simulated, adb_target):
    sim = simulated(**options)
    target = adb_target(sim)
    job = workdir(sim) / "jobs" / "slow"
    target.mkdirs(device_path(sim, job))
    script = "echo $$ > pids; sleep 30 & echo $! >> pids; echo partial; wait"
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        target.run_detached(["sh", "-c", script], device_path(sim, job), timeout_s=1.0)
    assert time.monotonic() - start < 15
    assert err.value.device == "sim-1" and "partial" in err.value.output
    pids = [int(p) for p in (job / "pids").read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    def alive(pid):  # pids as the confined device numbers them (its own PID namespace)
        host = host_pid(sim, pid)
        return host is not None and process_alive(host)
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_a_device_vanishing_mid_run_names_the_device_and_command(simulated, adb_target):
    sim = simulated()
    target = adb_target(sim, name="vanishing")  # the default reconnect schedule (5 attempts)
    job = workdir(sim) / "jobs" / "v"
    target.mkdirs(device_path(sim, job))
    # vanish_after("run") fires only for a shell command that is still running after 0.5 s; a
    # detached job's start command returns at once, so the test pulls the plug itself.
    when((job / "started").exists, sim.vanish)
    with pytest.raises(TargetError, match="gone") as err:
        target.run_detached(["sh", "-c", "touch started; sleep 20"], device_path(sim, job), timeout_s=60)
    assert err.value.device == "vanishing" and "sleep 20" in str(err.value)
    assert "5 reconnect attempts failed" in str(err.value)
    with pytest.raises(TargetError, match="refused"):
        target.stat(device_path(sim, job))


def test_a_poll_before_the_job_has_written_its_output_says_running(simulated, adb_target):
    target = adb_target(simulated())
    pid = target.run(["sh", "-c", "sleep 5 >/dev/null 2>&1 & echo $!"], timeout_s=10).stdout.strip()
    poll = target.run(["sh", "-c", POLL_SCRIPT, "qskew-poll", "/nonexistent/exit", pid, "/nonexistent/out"],
                      timeout_s=10)
    assert (poll.returncode, poll.stdout.strip()) == (0, "running")
    target.run(["kill", pid], timeout_s=10)
