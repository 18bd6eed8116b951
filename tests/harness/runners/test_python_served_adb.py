"""harness/runners/python.py over ADB with the runner that stays up (``run.py --serve`` on one
shell-v2 stream per device session, harness/targets/adb_served.py), on the simulated device: the
real ADB protocol, the real runner and runtime."""

from __future__ import annotations

import sys
import time

import numpy as np

import pytest

import harness.runners.python as python_runner
from harness.runners.python import run_job
from support import tiny_models as tiny
from support.adb_sim import session_key, when

N_SAMPLES = 150
JOBS = [(v, d) for v in ("fp32", "int8") for d in ("xnnpack", "reference")]


@pytest.fixture(scope="module")
def test_set():
    return tiny.make_test_set(N_SAMPLES)


def adb_on(sim, **options):
    from harness.targets.adb import AdbTarget

    host, port = sim.address
    return AdbTarget("sim-phone", address=f"{host}:{port}", workdir="/data/local/tmp/qskew",
                     key_path=session_key(), **options)


def _artifact(path, variant):
    import hashlib

    from harness.records import ModelArtifact

    data = path.read_bytes()
    return ModelArtifact(variant=variant, path=path, sha256=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data), inputs=(), outputs=(), recipe={})


def _detached_jobs(sim) -> list:
    """Job folders a runner of their own ran in (detached runs leave .qskew-job.* files)."""
    return list((sim.root / "data/local/tmp/qskew/jobs").glob("*/.qskew-job.stdout"))


def _wrapper(sim, name: str, body: str) -> str:
    """A device "python" (its path on the device) that runs ``body`` with the real interpreter."""
    bin_dir = sim.root / "system" / "bin"
    (bin_dir / f"{name}.py").write_text(body)
    exe = bin_dir / name
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} /system/bin/{name}.py "$@"\n')
    exe.chmod(0o755)
    return f"/system/bin/{name}"


def test_one_served_runner_over_adb_gives_the_bits_of_a_runner_per_job(models, test_set, simulated,
                                                                       monkeypatch):
    sim = simulated()
    with adb_on(sim) as phone:
        served = [run_job(phone, _artifact(models[v], v), test_set, d) for v, d in JOBS]
        (process,) = phone._served.values()
        assert process.alive and process.pid
    assert not process.alive
    assert _detached_jobs(sim) == []  # every job went to the served runner
    monkeypatch.setattr(python_runner, "SERVED_RUNNER", False)
    alone_sim = simulated()
    with adb_on(alone_sim) as phone:
        alone = [run_job(phone, _artifact(models[v], v), test_set, d) for v, d in JOBS]
        assert phone._served == {}
    assert len(_detached_jobs(alone_sim)) == len(JOBS)
    for (v, d), a, b in zip(JOBS, served, alone):
        assert a.ok and b.ok, (a.error, b.error)
        assert a.raw.dtype == b.raw.dtype and a.raw.tobytes() == b.raw.tobytes(), (v, d)
        assert a.delegate_applied == b.delegate_applied


def test_a_served_runner_killed_on_the_device_is_replaced(models, test_set, simulated):
    with adb_on(simulated()) as phone:
        assert run_job(phone, _artifact(models["fp32"], "fp32"), test_set).ok
        (first,) = phone._served.values()
        phone.run(["kill", "-9", str(first.pid)], timeout_s=30)
        again = run_job(phone, _artifact(models["int8"], "int8"), test_set)
        assert again.ok, again.error
        (second,) = phone._served.values()
        assert second is not first and second.alive and second.pid != first.pid


def test_a_runner_that_does_not_serve_this_protocol_gets_one_runner_per_job(models, test_set, simulated,
                                                                           tmp_path):
    sim = simulated()
    old = _wrapper(sim, "old-python", f"""
import os, sys
if sys.argv[-1] == "--serve":  # a runner from before --serve: no such mode, it greets at 1.3 and stops
    print("QSKEW-RUNNER protocol=1.3 python=3 numpy=1")
    sys.exit(2)
os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])
""")
    with adb_on(sim, python=old) as phone:
        run = run_job(phone, _artifact(models["int8"], "int8"), test_set)
        assert phone._served == {} or not any(p.alive for p in phone._served.values())
    assert run.ok, run.error
    assert len(_detached_jobs(sim)) == 1


def test_a_link_dropped_under_a_served_job_ends_that_runner_and_a_new_one_runs_the_job(models, test_set,
                                                                                 simulated, tmp_path):
    # The device's runner waits 1 s after each job line it reads (and says so with a file), so the
    # link is dropped while the host waits for that job's answer.
    sim = simulated()
    slow = _wrapper(sim, "slow-python", """
import os, runpy, sys, time
args = [a for a in sys.argv[1:] if a != "-B"]
sys.argv = args
sys.path.insert(0, os.path.dirname(args[0]))
if args[1:] == ["--serve"]:
    real = sys.stdin
    class Slow:
        def readline(self):
            line = real.readline()
            if line.strip():
                open(os.path.join(line.strip(), ".served-started"), "w").close()
                time.sleep(1.0)
            return line
    sys.stdin = Slow()
runpy.run_path(args[0], run_name="__main__")
""")
    jobs = sim.root / "data/local/tmp/qskew/jobs"
    first_pid = []
    art = _artifact(models["fp32"], "fp32")
    with adb_on(sim, python=slow) as phone:
        def drop():
            first_pid.extend(p.pid for p in phone._served.values())
            sim.drop_connections()
        dropper = when(lambda: any(jobs.glob("*/.served-started")), drop)
        run = run_job(phone, art, test_set, "reference")
        reconnects = phone.reconnects
        (second,) = phone._served.values()
    dropper.join()
    assert run.ok, run.error
    assert reconnects >= 1 and _detached_jobs(sim) == []  # a second served runner took the job
    assert second.pid != first_pid[0]
    with adb_on(simulated()) as phone:
        assert np.array_equal(run.raw, run_job(phone, art, test_set, "reference").raw)


def test_a_served_runner_past_its_time_limit_is_killed_on_the_device(models, test_set, simulated, tmp_path):
    from harness.errors import CommandTimeout

    sim = simulated()
    hung = _wrapper(sim, "hung-python", """
import os, runpy, sys, time
args = [a for a in sys.argv[1:] if a != "-B"]
sys.argv = args
sys.path.insert(0, os.path.dirname(args[0]))
if args[1:] == ["--serve"]:
    real = sys.stdin
    class Hung:
        def readline(self):
            line = real.readline()
            if line.strip():
                time.sleep(600)
            return line
    sys.stdin = Hung()
runpy.run_path(args[0], run_name="__main__")
""")
    with adb_on(sim, python=hung) as phone:
        with pytest.raises(CommandTimeout) as err:
            run_job(phone, _artifact(models["fp32"], "fp32"), test_set, timeout_s=15)  # the greeting must come in time
        (process,) = phone._served.values()
        assert not process.alive and process.pid
        deadline = time.monotonic() + 20  # the kill is sent at the timeout; on a loaded host it lands a moment later
        while phone.run(["kill", "-0", str(process.pid)], timeout_s=30).returncode == 0:
            assert time.monotonic() < deadline, f"runner {process.pid} still alive 20 s after its timeout"
            time.sleep(0.2)
    assert err.value.device == "sim-phone"
