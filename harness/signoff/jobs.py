"""The ``jobs_completed`` rule: the run is judged against its plan, not against the files it holds.

A run that planned twelve jobs and finished one has not "finished all 1 jobs": every planned job
that is missing (never started, interrupted before its summary, or on a device whose connection
failed) or failed is named, and the rule FAILs (WARN under a policy's ``allow_failed_jobs``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from harness.signoff.verdict import FAIL, PASS, WARN, RuleResult

JOB_KEYS = ("variant", "target", "delegate")
SHOWN_JOBS = 6  # jobs the message names; the evidence lists them all


def jobs_rule(plan: Iterable[Iterable[str]] | None, runs: list[Mapping[str, Any]],
              allow_failed: bool = False) -> RuleResult:
    """Judge the summary's ``runs`` against the manifest's ``plan`` ([variant, target, delegate]
    lists; None for a run written before plans were recorded: its summary's jobs are the plan)."""
    entries = {tuple(r[k] for k in JOB_KEYS): r for r in runs}
    planned = [tuple(job) for job in plan] if plan is not None else []
    planned += [job for job in entries if job not in planned]
    evidence = tuple(e for e in (_problem(job, entries.get(job)) for job in planned) if e is not None)
    ok = sum(1 for r in runs if r["status"] == "ok")
    if not ok:
        return RuleResult("jobs_completed", FAIL, len(planned), 0,
                          f"no job finished of {len(planned)} planned: nothing to sign off", evidence)
    retried = tuple(_retried(job, entries[job]) for job in planned
                    if job in entries and entries[job]["status"] == "ok" and entries[job].get("attempts"))
    after = (f" ({len(retried)} after failed attempts on another device: "
             + "; ".join(f"{r['job']} ({r['why']})" for r in retried[:SHOWN_JOBS]) + ")") if retried else ""
    if not evidence:
        return RuleResult("jobs_completed", PASS, len(planned), ok,
                          f"all {len(planned)} planned jobs finished{after}", retried)
    shown = "; ".join(f"{e['job']} ({e['why']})" for e in evidence[:SHOWN_JOBS])
    more = f"; and {len(evidence) - SHOWN_JOBS} more" if len(evidence) > SHOWN_JOBS else ""
    status = WARN if allow_failed else FAIL
    allowed = " (allow_failed_jobs)" if allow_failed else ""
    return RuleResult("jobs_completed", status, len(planned), ok,
                      f"{len(evidence)} of {len(planned)} planned jobs did not finish{allowed}: {shown}{more}{after}",
                      evidence + retried)


def _retried(job: tuple, entry: Mapping[str, Any]) -> dict:
    """The evidence for a finished job that needed retries: where its attempts failed."""
    attempts = list(entry.get("attempts") or [])
    devices = ", ".join(str(a.get("device")) for a in attempts)
    ran = (entry.get("device") or {}).get("name")
    return {"job": " / ".join(map(str, job)), "status": "ok", "stage": None, "error": None,
            "attempts": attempts, "why": f"{len(attempts)} failed attempt(s) on {devices}; finished on {ran}"}


def _problem(job: tuple, entry: Mapping[str, Any] | None) -> dict | None:
    """The evidence for a planned job that did not finish, None for one that did."""
    name = " / ".join(map(str, job))
    if entry is None:
        return {"job": name, "status": "missing", "stage": None, "error": None,
                "why": "missing: never finished (interrupted, or its device was unreachable)"}
    if entry["status"] != "ok":
        error = str(entry.get("error") or "").splitlines()[0:1]
        return {"job": name, "status": entry["status"], "stage": entry.get("stage"), "error": entry.get("error"),
                "why": f"failed at {entry.get('stage')}" + (f": {error[0][:80]}" if error else "")}
    return None
