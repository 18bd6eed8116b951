"""signoff.jobs: a job finished on a retry is finished (its attempts shown); one out of retries failed."""

from harness.signoff.jobs import jobs_rule
from harness.signoff.verdict import FAIL, PASS

PLAN = [["int8", "pool", "xnnpack"], ["fp32", "pool", "xnnpack"]]


def _entry(variant, status, **extra):
    return {"variant": variant, "target": "pool", "delegate": "xnnpack", "status": status, **extra}


def test_a_job_finished_on_a_retry_counts_as_finished_and_its_attempts_are_shown():
    runs = [_entry("int8", "ok", device={"name": "p2"}, attempts=[{"device": "p1", "error": "link lost"}]),
            _entry("fp32", "ok", device={"name": "p1"})]
    rule = jobs_rule(PLAN, runs)
    assert (rule.status, rule.limit, rule.observed) == (PASS, 2, 2)
    assert "1 after failed attempts on another device" in rule.message and "on p1; finished on p2" in rule.message
    [evidence] = rule.evidence
    assert evidence["attempts"] == [{"device": "p1", "error": "link lost"}]


def test_a_job_out_of_retries_is_a_failed_job():
    attempts = [{"device": d, "error": "timeout"} for d in ("p1", "p2", "p3")]
    runs = [_entry("int8", "failed", stage="run", error="device: timeout (out of retries: 3 attempts)",
                   attempts=attempts), _entry("fp32", "ok")]
    rule = jobs_rule(PLAN, runs)
    assert rule.status == FAIL and "1 of 2 planned jobs did not finish" in rule.message
