"""farm.pool: one queue per pool; device failures move a job to another member and drain a member."""

import threading

from harness.farm.pool import DRAIN_AFTER_FAILURES, PoolQueue, Ticket


def _queue(jobs, members=("a", "b"), **kw):
    return PoolQueue("p", [Ticket(job=j) for j in jobs], members, **kw)


def test_each_job_is_taken_once_by_whichever_member_asks():
    q = _queue(["j1", "j2", "j3"])
    taken = [q.take("a"), q.take("b"), q.take("a")]
    assert [t.job for t in taken] == ["j1", "j2", "j3"]
    for member in "aba":
        q.done(member)
    assert q.take("a") is None and q.take("b") is None and q.orphans() == []


def test_a_retried_job_goes_to_another_member_first_and_keeps_its_attempts():
    q = _queue(["j1", "j2"])
    t = q.take("a")
    assert q.retry(t, "a", "link lost") is False
    assert q.take("a").job == "j2"  # a never takes back the job it failed
    again = q.take("b")
    assert again is t and again.attempts == [{"device": "a", "error": "link lost"}]


def test_a_member_failing_twice_in_a_row_is_drained_and_its_jobs_are_left_to_the_others():
    q = _queue(["j1", "j2", "j3"])
    first = q.take("a")
    q.retry(first, "a", "timeout")
    second = q.take("a")
    assert q.retry(second, "a", "timeout") is True and DRAIN_AFTER_FAILURES == 2
    assert q.take("a") is None and "a" in q.drained() and q.live() == ["b"]
    assert sorted(q.take("b").job for _ in range(1)) == ["j2"]


def test_a_success_resets_the_failure_streak():
    q = _queue(["j1", "j2", "j3"], members=("a",))
    q.retry(q.take("a"), "a", "timeout")
    q.take("a")
    q.done("a")
    q.retry(q.take("a"), "a", "timeout")
    assert q.live() == ["a"]


def test_a_job_no_live_member_may_take_is_an_orphan():
    q = _queue(["j1"], members=("a",))
    q.retry(q.take("a"), "a", "gone")
    assert q.take("a") is None  # it failed there; nothing else is in flight
    [left] = q.orphans()
    assert left.attempts[0]["device"] == "a"


def test_a_waiting_member_takes_a_job_handed_back_by_another_and_a_new_member_joins():
    q = _queue(["j1"], members=("a", "b"))
    t = q.take("a")
    got = []
    waiter = threading.Thread(target=lambda: got.append(q.take("b")))
    waiter.start()  # b waits: j1 is in flight and may come back
    q.retry(t, "a", "gone")
    waiter.join(timeout=5)
    assert got[0] is t
    q.join("c")
    assert q.live() == ["a", "b", "c"]


def test_members_only_take_jobs_they_can_run():
    q = _queue(["gpu", "cpu"], members={"a": lambda job: True, "b": lambda job: job == "cpu"})
    assert q.take("b").job == "cpu" and q.take("a").job == "gpu"


def test_ctrl_c_during_a_farm_sweep_stops_every_worker_after_its_current_job():
    import os
    import signal
    import time
    from types import SimpleNamespace

    import pytest

    from harness.farm.schedule import _drain_all, _side_by_side

    q = _queue([f"j{i}" for i in range(20)])
    ran = []

    def work(dev):
        while (ticket := q.take(dev.spec.name)) is not None:
            ran.append(ticket.job)
            time.sleep(0.05)
            if ticket.job == "j2":  # Ctrl-C reaches the main thread, which waits on the workers
                os.kill(os.getpid(), signal.SIGINT)
            q.done(dev.spec.name)

    devices = [SimpleNamespace(spec=SimpleNamespace(name=m)) for m in ("a", "b")]
    with pytest.raises(KeyboardInterrupt):
        _side_by_side(work, devices, lambda: _drain_all({"p": q}, "interrupted"))
    assert 3 <= len(ran) <= 8 and len(q.orphans()) == 20 - len(ran)  # not the whole queue (it was)
    assert set(q.drained().values()) == {"interrupted"}


def test_a_member_stopped_by_a_non_device_error_is_drained_naming_it(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    import pytest

    from harness.farm import job
    from harness.farm.job import OpenDevice, SweepContext, run_ticket

    monkeypatch.setattr(job, "lease_key", lambda spec: spec.name)
    monkeypatch.setattr(job, "lease", lambda key, echo: contextlib.nullcontext({}))

    def broken(*args, **kwargs):
        raise RuntimeError("host bug")

    monkeypatch.setattr(job, "_run_repeated", broken)
    progress = SimpleNamespace(start=lambda *a: None, finish=lambda *a: None)
    ctx = SweepContext(SimpleNamespace(run=SimpleNamespace(retries=2)), [], None, None, progress, print)
    spec = SimpleNamespace(group="p", name="a", pool="p", reach="local", serial=None, address=None)
    from harness.farm.shards import ShardJob
    from harness.on_device import shards_of
    from tests.support.tiny_models import make_test_set

    shard = shards_of(make_test_set(2), 2)[0]
    q = _queue([ShardJob(SimpleNamespace(variant="int8"), "xnnpack", shard), "j2"])
    with pytest.raises(RuntimeError):
        run_ticket(ctx, OpenDevice(spec, None, {}), q, q.take("a"), pooled=True)
    assert q.live() == ["b"] and "host bug" in q.drained()["a"]  # its worker is gone: not a live member
