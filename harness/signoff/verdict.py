"""Sign-off's records: the outcomes, a rule's result and the verdict. The policy (its keys, file
and validation): :mod:`harness.signoff.policy`; the rules and their documentation: :mod:`harness.signoff`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from harness.signoff.policy import Policy

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
EXIT_PASS = 0
EXIT_WARN = 0   # a warning is not a failure: CI stays green, the WARNING line says why
EXIT_FAIL = 1
MIN_FLIPS = 6   # below 6 flips no exact two-sided test can reach p < 0.05; a ratio on them is noise
NO_DELEGATE = ("reference", "builtin")  # delegate specs that apply no delegate by design
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome: status PASS/WARN/FAIL, the limit, the deciding value and the evidence."""

    rule: str
    status: str
    limit: Any
    observed: Any
    message: str
    evidence: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The sign-off of one run directory."""

    verdict: str
    rules: tuple[RuleResult, ...]
    policy: Policy
    run_dir: str
    statistics: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "run_dir": self.run_dir, "policy": self.policy.to_json(),
                "statistics": dict(self.statistics),
                "rules": [{**asdict(r), "evidence": [dict(e) for e in r.evidence]} for r in self.rules]}
