"""A pool's shared job queue: identical devices take jobs from one queue; failed attempts move on.

A *pool* is a group of devices that count as one target: every job of the pool runs once, on
whichever member is free, and the run directory keys it ``(variant, pool name, delegate)``. A
device outside any pool is a group of one (its own queue), so ``schedule`` treats both alike.

Each member's worker thread loops on :meth:`PoolQueue.take` until it returns None. A job that fails
for a device reason (the device vanished, timed out, adb failed) is handed back with
:meth:`PoolQueue.retry`: it goes to the front of the queue, and no member it failed on takes it
again. A member that fails twice in a row, or that disappears (hot-plug), is drained: its worker
stops taking jobs. A job no live member may take any more is left in :meth:`PoolQueue.orphans`.

>>> q = PoolQueue("p", [Ticket(job="a")], members=["d1", "d2"])
>>> t = q.take("d1"); q.retry(t, "d1", "vanished"); q.take("d2").job
'a'
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Mapping

DRAIN_AFTER_FAILURES = 2   # a device failing this many jobs in a row is drained for the rest of the run
DEFAULT_RETRIES = 2        # device-reason retries of one job on other members ([run] retries)


@dataclass
class Ticket:
    """One job in a queue and the attempts that failed on a device (member name, error) so far."""

    job: Any
    attempts: list[dict] = field(default_factory=list)

    def failed_on(self) -> set[str]:
        return {a["device"] for a in self.attempts}


class PoolQueue:
    """The jobs of one pool (or one lone device), taken by its live members one at a time.

    ``members`` are the member names, or a mapping of each name to ``accepts(job)``: whether it may
    run a job at all (e.g. it offers the job's delegate); members join (:meth:`join`) and leave
    (:meth:`drain`) while jobs run.
    """

    def __init__(self, name: str, tickets: Iterable[Ticket],
                 members: Iterable[Hashable] | Mapping[Hashable, Callable[[Any], bool]]):
        self.name = name
        self._pending = collections.deque(tickets)
        self._accepts = dict(members) if isinstance(members, Mapping) else {m: _anything for m in members}
        self._live = list(self._accepts)
        self._drained: dict[Hashable, str] = {}
        self._streak: collections.Counter = collections.Counter()
        self._in_flight = 0
        self._cond = threading.Condition()

    def take(self, member: Hashable) -> Ticket | None:
        """The next job ``member`` may run; waits while jobs in flight may still come back to it.

        None when the member is drained or nothing is left for it."""
        with self._cond:
            while True:
                if member not in self._live:
                    return None
                ticket = next((t for t in self._pending if self._fits(member, t)), None)
                if ticket is not None:
                    self._pending.remove(ticket)
                    self._in_flight += 1
                    return ticket
                if self._in_flight == 0:
                    return None
                self._cond.wait()

    def _fits(self, member: Hashable, ticket: Ticket) -> bool:
        return str(member) not in ticket.failed_on() and self._accepts[member](ticket.job)

    def done(self, member: Hashable) -> None:
        """``member`` finished its job (ok, or failed for a model reason: no retry)."""
        with self._cond:
            self._in_flight -= 1
            self._streak[member] = 0
            self._cond.notify_all()

    def retry(self, ticket: Ticket, member: Hashable, error: str) -> bool:
        """``member`` failed ``ticket`` for a device reason: the attempt is kept and the job queued
        again at the front for another member. Returns True when ``member`` is drained by it."""
        with self._cond:
            ticket.attempts.append({"device": str(member), "error": str(error)})
            self._pending.appendleft(ticket)
            self._in_flight -= 1
            self._streak[member] += 1
            drained = self._streak[member] >= DRAIN_AFTER_FAILURES
            if drained:
                self._drain_locked(member, f"failed {DRAIN_AFTER_FAILURES} jobs in a row")
            self._cond.notify_all()
            return drained

    def give_up(self, ticket: Ticket, member: Hashable, error: str) -> None:
        """``ticket`` failed on ``member`` and is out of retries: recorded as failed by the caller."""
        with self._cond:
            ticket.attempts.append({"device": str(member), "error": str(error)})
            self._in_flight -= 1
            self._streak[member] += 1
            if self._streak[member] >= DRAIN_AFTER_FAILURES:
                self._drain_locked(member, f"failed {DRAIN_AFTER_FAILURES} jobs in a row")
            self._cond.notify_all()

    def drain(self, member: Hashable, why: str) -> None:
        """Take ``member`` out of the pool for the rest of the run (its current job runs on)."""
        with self._cond:
            self._drain_locked(member, why)
            self._cond.notify_all()

    def _drain_locked(self, member: Hashable, why: str) -> None:
        if member in self._live:
            self._live.remove(member)
            self._drained[member] = why

    def join(self, member: Hashable, accepts: Callable[[Any], bool] | None = None) -> None:
        """A new member (a device that appeared mid-run) takes jobs from now on (those ``accepts`` takes)."""
        with self._cond:
            self._accepts[member] = accepts or self._accepts.get(member, _anything)
            if member not in self._live:
                self._live.append(member)
                self._drained.pop(member, None)
                self._streak[member] = 0
            self._cond.notify_all()

    def drained(self) -> dict[Hashable, str]:
        """Drained members and why."""
        with self._cond:
            return dict(self._drained)

    def live(self) -> list[Hashable]:
        with self._cond:
            return list(self._live)

    def orphans(self) -> list[Ticket]:
        """Jobs left in the queue once every worker stopped (no live member could take them)."""
        with self._cond:
            return list(self._pending)


def _anything(job: Any) -> bool:
    return True
