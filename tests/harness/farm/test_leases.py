"""Device leases: two processes never hold one device at once; a dead holder's lease is broken."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.errors import TargetError
from harness.farm import leases

HOLD = """
import sys, time
from harness.farm.leases import lease
for _ in range(int(sys.argv[2])):
    with lease(sys.argv[1], print):
        time.sleep(float(sys.argv[3]))
"""


def _spawn(env, *args):
    return subprocess.Popen([sys.executable, "-c", HOLD, *map(str, args)], env=env, stdout=subprocess.PIPE, text=True)


def test_two_processes_never_hold_one_device_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(leases.ENV_FARM_DIR, str(tmp_path))
    env = {**os.environ, leases.ENV_FARM_DIR: str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [_spawn(env, "phone-1", 4, 0.1) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    rows = [json.loads(line) for line in (tmp_path / "leases" / leases.HISTORY).read_text().splitlines()]
    assert len(rows) == 8 and {r["pid"] for r in rows} == {p.pid for p in procs}
    spans = sorted((r["start"], r["end"]) for r in rows)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert leases.held_leases() == []


def test_a_held_lease_is_listed_and_a_dead_holders_lease_is_broken(tmp_path, monkeypatch):
    monkeypatch.setenv(leases.ENV_FARM_DIR, str(tmp_path))
    env = {**os.environ, leases.ENV_FARM_DIR: str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = _spawn(env, "phone-2", 1, 60)
    deadline = time.monotonic() + 20
    while not leases.held_leases() and time.monotonic() < deadline:
        time.sleep(0.05)
    [held] = leases.held_leases()
    assert (held["key"], held["pid"]) == ("phone-2", holder.pid) and "start" in held and held["host"]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    said = []
    with leases.lease("phone-2", said.append) as mine:
        assert mine["pid"] == os.getpid()
    assert len(said) == 1 and "broke a stale lease" in said[0] and str(holder.pid) in said[0]


def test_a_live_holders_lease_older_than_the_max_age_is_broken_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(leases.ENV_FARM_DIR, str(tmp_path))
    env = {**os.environ, leases.ENV_FARM_DIR: str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = _spawn(env, "phone-3", 1, 60)  # alive, holding the lease for a minute
    try:
        deadline = time.monotonic() + 20
        while not leases.held_leases() and time.monotonic() < deadline:
            time.sleep(0.05)
        said = []
        with pytest.raises(TargetError, match=f"still held by .*{holder.pid}"):  # young: not broken
            with leases.lease("phone-3", said.append, wait_s=0.2, max_age_s=60):
                pass
        time.sleep(0.3)
        with leases.lease("phone-3", said.append, wait_s=5, max_age_s=0.2) as mine:
            assert str(holder.pid) in mine["broke"] and "live process" in mine["broke"]
            assert [h["pid"] for h in leases.held_leases()] == [os.getpid()]
        assert any("broke an over-age lease" in s for s in said)
        assert holder.poll() is None  # the old holder lives on, holding a file nobody opens any more
    finally:
        holder.kill()
        holder.wait(timeout=10)
