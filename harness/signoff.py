"""Sign-off: judge a run directory against a policy and give a PASS, WARN or FAIL verdict.

A policy is a TOML file whose keys sit at the top level; a key that is absent is not judged, an
unknown key is a ConfigError that names it. Fractions are fractions (0.02 = 2 percentage points)::

    max_worst_group_drop = 0.02      # largest per-group accuracy drop vs FP32 allowed, any job
    max_psi = 0.01                   # largest psi (a group's drop minus the overall drop) allowed
    judge_on_upper_bound = false     # judge the two limits above on the 95 % interval's upper bound
    max_flip_rate_ratio = 2.0        # largest (group flip rate) / (majority group's flip rate)
    min_group_size = 100             # every group needs at least this many test samples
    require_devices = ["pixel7"]     # targets that must have at least one finished job
    require_delegates = ["xnnpack"]  # delegates that must have really run (on each required device)

A default policy ships in the package (``harness/policies/default.toml``) and is used when none is
given. Every judged key becomes one rule; one more rule, ``jobs_completed``, is always judged.

Rule outcomes and what WARN means
---------------------------------
* ``max_worst_group_drop`` / ``max_psi``: per job, the point estimate (or, with
  ``judge_on_upper_bound``, the upper bound of the paired bootstrap interval) is compared with the
  limit. FAIL if it is above. WARN if the point estimate is within the limit but the interval's
  upper bound is not: the test set cannot rule out a breach (only when judging point estimates).
* ``max_flip_rate_ratio``: per job, each group's flip rate over that of the largest group (the
  majority). FAIL above the limit; WARN when every group above it has fewer than 6 flips (too few
  events to tell from noise). A majority without flips gives ratio 1 if the group has none either,
  else infinity.
* ``min_group_size``: FAIL if a test-set group has fewer samples.
* ``require_devices``: FAIL if a listed target has no finished job.
* ``require_delegates``: FAIL if a listed delegate has no finished job (on each required device,
  else on any target) that really applied it; WARN if the runner could not tell which delegate it
  applied ("unknown"), the job was kept unproven ("gpu (unproven)") or ran partly on the GPU
  ("gpu (partial)"). "reference" and "builtin" need no applied delegate.
* ``jobs_completed`` (always): FAIL if no job finished, WARN if some job failed.

The verdict is FAIL if any rule fails, else WARN if any rule warns, else PASS.

Exit codes of ``qskew signoff``: 0 PASS; 0 WARN, with a line starting "WARNING:" on stderr; 1 FAIL;
2 the run directory or the policy could not be read (a QskewError).

Outputs: ``RUN_DIR/signoff.json`` (``Verdict.to_json``: verdict, policy, run_dir, statistics
settings and, per rule, rule/status/limit/observed/message/evidence) and a JUnit XML file with one
testcase per rule (FAIL as ``<failure>``, WARN as a passing testcase with a ``<system-out>``
"WARNING" line), so a lab's CI shows each rule.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from harness.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from harness.metrics.stats import Stats
    from harness.rundir import RunData

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
EXIT_PASS = 0
EXIT_WARN = 0   # a warning is not a failure: CI stays green, the WARNING line says why
EXIT_FAIL = 1
DEFAULT_POLICY = "default.toml"  # inside the harness.policies package data
MIN_FLIPS = 6   # below 6 flips no exact two-sided test can reach p < 0.05; a ratio on them is noise
NO_DELEGATE = ("reference", "builtin")  # delegate specs that apply no delegate by design
_RANK = {PASS: 0, WARN: 1, FAIL: 2}

# key -> (kind, description) for validation and error messages
POLICY_KEYS: dict[str, tuple[str, str]] = {
    "max_worst_group_drop": ("fraction", "largest allowed per-group accuracy drop, a fraction"),
    "max_psi": ("fraction", "largest allowed psi (group drop - overall drop), a fraction"),
    "judge_on_upper_bound": ("bool", "judge drop limits on the interval's upper bound"),
    "max_flip_rate_ratio": ("positive", "largest allowed group/majority flip-rate ratio"),
    "min_group_size": ("count", "smallest allowed test-set group"),
    "require_devices": ("names", "targets that must have finished jobs"),
    "require_delegates": ("names", "delegates that must have really run"),
}


@dataclass(frozen=True)
class Policy:
    """Validated sign-off limits; None = not judged."""

    max_worst_group_drop: float | None = None
    max_psi: float | None = None
    judge_on_upper_bound: bool = False
    max_flip_rate_ratio: float | None = None
    min_group_size: int | None = None
    require_devices: tuple[str, ...] | None = None
    require_delegates: tuple[str, ...] | None = None
    source: str = ""

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


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


# -- policy ------------------------------------------------------------------------------------

def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; ``None`` loads the packaged default policy.

    Example::

        policy = load_policy(Path("strict.toml"))   # ConfigError names a bad or unknown key
    """
    if path is None:
        ref = resources.files("harness").joinpath("policies", DEFAULT_POLICY)
        return parse_policy(tomllib.loads(ref.read_text(encoding="utf-8")), source=f"(default) {ref}")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy {path} is not valid TOML: {exc}") from exc
    return parse_policy(raw, source=str(path))


def parse_policy(raw: Mapping[str, Any], source: str = "policy") -> Policy:
    """Validate a policy mapping (top-level keys only; see the module docstring)."""
    unknown = sorted(set(raw) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown policy key {unknown[0]!r}; known keys: {', '.join(POLICY_KEYS)}")
    values = {key: _check_value(key, value, source) for key, value in raw.items()}
    return Policy(**values, source=source)


def _check_value(key: str, value: Any, source: str) -> Any:
    kind, what = POLICY_KEYS[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "fraction" and number and 0 <= value <= 1:
        return float(value)
    if kind == "positive" and number and value > 0 and math.isfinite(value):
        return float(value)
    if kind == "count" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "names" and isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    expected = {"fraction": "a number in [0, 1] (0.02 = 2 percentage points)", "positive": "a number > 0",
                "count": "an integer >= 1", "bool": "true or false", "names": "a list of non-empty strings"}[kind]
    raise ConfigError(f"{source}: policy key {key!r} ({what}) must be {expected}, got {value!r}")


# -- judging -----------------------------------------------------------------------------------

def signoff(run_dir: Path, policy: Policy, n_resamples: int | None = None, seed: int | None = None) -> Verdict:
    """Read ``run_dir``, compute its statistics and judge them against ``policy``.

    Example::

        verdict = signoff(Path("runs/demo"), load_policy(None))
        print(format_verdict(verdict))
    """
    from harness.metrics import stats as st
    from harness.rundir import read_run

    run = read_run(Path(run_dir))
    stats = st.run_stats(run, n_resamples=n_resamples or st.N_RESAMPLES, seed=st.SEED if seed is None else seed)
    return judge(run, stats, policy)


def judge(run: "RunData", stats: "Stats", policy: Policy) -> Verdict:
    """Apply every judged rule of ``policy`` to a run and its statistics."""
    from harness.metrics.stats import CONFIDENCE, N_RESAMPLES, SEED

    rules = []
    if policy.max_worst_group_drop is not None:
        rules.append(_limit_rule("max_worst_group_drop", "worst_group_drop", "worst_group",
                                 policy.max_worst_group_drop, policy.judge_on_upper_bound, stats.disparity))
    if policy.max_psi is not None:
        rules.append(_limit_rule("max_psi", "psi", "psi_group", policy.max_psi, policy.judge_on_upper_bound,
                                 stats.disparity))
    if policy.max_flip_rate_ratio is not None:
        rules.append(_flip_ratio_rule(policy.max_flip_rate_ratio, stats.groups))
    if policy.min_group_size is not None:
        rules.append(_group_size_rule(policy.min_group_size, _test_group_sizes(run)))
    if policy.require_devices is not None:
        rules.append(_devices_rule(policy.require_devices, run.summary["runs"]))
    if policy.require_delegates is not None:
        rules.append(_delegates_rule(policy.require_delegates, policy.require_devices, run.summary["runs"]))
    rules.append(_jobs_rule(run.summary["runs"]))
    verdict = max((r.status for r in rules), key=_RANK.__getitem__)
    d = stats.disparity
    settings = {"confidence": CONFIDENCE,
                "n_resamples": int(d["n_resamples"].iloc[0]) if len(d) else N_RESAMPLES,
                "seed": int(d["seed"].iloc[0]) if len(d) else SEED}
    return Verdict(verdict=verdict, rules=tuple(rules), policy=policy, run_dir=str(run.path), statistics=settings)


def _limit_rule(rule: str, column: str, group_column: str, limit: float, upper: bool,
                disparity: "pd.DataFrame") -> RuleResult:
    evidence = []
    for r in disparity.itertuples(index=False):
        point, lo, hi = getattr(r, column), getattr(r, f"{column}_lo"), getattr(r, f"{column}_hi")
        judged = hi if upper else point
        status = FAIL if judged > limit else (WARN if hi > limit else PASS)
        evidence.append({"job": _job(r), "group": getattr(r, group_column), "value": point, "lo": lo, "hi": hi,
                         "judged": judged, "status": status})
    if not evidence:
        return RuleResult(rule, PASS, limit, None, "no finished job to judge (see jobs_completed)")
    top = max(evidence, key=lambda e: (_RANK[e["status"]], e["judged"]))
    basis = "upper bound" if upper else "point estimate"
    message = (f"{column} {_pp(top['value'])} [{_pp(top['lo'])}, {_pp(top['hi'])}] ({top['group']}, "
               f"{top['job']}); judged on the {basis}: {_pp(top['judged'])} vs limit {_pp(limit)}")
    if top["status"] == WARN:
        message += "; the interval reaches past the limit"
    return RuleResult(rule, top["status"], limit, top["judged"], message, tuple(evidence))


def _flip_ratio_rule(limit: float, groups: "pd.DataFrame") -> RuleResult:
    evidence = []
    for job, part in groups[groups["scope"] == "group"].groupby(["variant", "target", "delegate"], sort=True):
        part = part.sort_values(["n", "group"], ascending=[False, True], kind="mergesort")
        majority = part.iloc[0]
        for r in part.iloc[1:].itertuples(index=False):
            ratio = _ratio(r.flip_rate, majority["flip_rate"])
            status = PASS if ratio <= limit else (FAIL if r.flips >= MIN_FLIPS else WARN)
            evidence.append({"job": " / ".join(job), "group": r.group, "majority": majority["group"],
                             "flip_rate": r.flip_rate, "majority_flip_rate": majority["flip_rate"],
                             "flips": int(r.flips), "ratio": ratio, "status": status})
    if not evidence:
        return RuleResult("max_flip_rate_ratio", PASS, limit, None, "no job with two or more groups to compare")
    top = max(evidence, key=lambda e: (_RANK[e["status"]], e["ratio"]))
    message = (f"{top['group']} flips {100 * top['flip_rate']:.2f} % vs majority {top['majority']} "
               f"{100 * top['majority_flip_rate']:.2f} % ({top['job']}): ratio {top['ratio']:.2f} vs limit {limit:g}")
    if top["status"] == WARN:
        message += f"; only {top['flips']} flips (< {MIN_FLIPS}), too few to tell from noise"
    return RuleResult("max_flip_rate_ratio", top["status"], limit, top["ratio"], message, tuple(evidence))


def _ratio(rate: float, majority_rate: float) -> float:
    if majority_rate > 0:
        return float(rate / majority_rate)
    return 1.0 if rate == 0 else math.inf


def _group_size_rule(limit: int, sizes: Mapping[str, int]) -> RuleResult:
    small = {g: n for g, n in sizes.items() if n < limit}
    evidence = tuple({"group": g, "n": n, "status": FAIL if g in small else PASS} for g, n in sorted(sizes.items()))
    if not sizes:
        return RuleResult("min_group_size", FAIL, limit, None, "the run holds no test samples")
    smallest = min(sizes, key=lambda g: (sizes[g], g))
    if small:
        message = "groups below the limit: " + ", ".join(f"{g} (n={n})" for g, n in sorted(small.items()))
        return RuleResult("min_group_size", FAIL, limit, sizes[smallest], message + f"; limit {limit}", evidence)
    return RuleResult("min_group_size", PASS, limit, sizes[smallest],
                      f"smallest group {smallest} has n={sizes[smallest]} >= {limit}", evidence)


def _test_group_sizes(run: "RunData") -> dict[str, int]:
    """Samples per group in the test set (the reference rows of the run)."""
    counts = run.test_set()["group"].value_counts()
    return {str(g): int(n) for g, n in counts.items()}


def _devices_rule(devices: tuple[str, ...], runs: list[dict]) -> RuleResult:
    evidence = []
    for device in devices:
        ok = sum(1 for r in runs if r["target"] == device and r["status"] == "ok")
        failed = sum(1 for r in runs if r["target"] == device and r["status"] != "ok")
        evidence.append({"device": device, "ok_jobs": ok, "failed_jobs": failed, "status": PASS if ok else FAIL})
    missing = [e["device"] for e in evidence if e["status"] == FAIL]
    message = (f"no finished job on: {', '.join(missing)}" if missing
               else f"every required device has finished jobs: {', '.join(devices)}")
    return RuleResult("require_devices", FAIL if missing else PASS, list(devices),
                      sorted({r["target"] for r in runs if r["status"] == "ok"}), message, tuple(evidence))


def _delegates_rule(delegates: tuple[str, ...], devices: tuple[str, ...] | None, runs: list[dict]) -> RuleResult:
    ok_runs = [r for r in runs if r["status"] == "ok"]
    places = list(devices) if devices else [None]
    evidence = []
    for delegate in delegates:
        for device in places:
            jobs = [r for r in ok_runs if r["delegate"] == delegate and (device is None or r["target"] == device)]
            applied = sorted({str(r.get("delegate_applied")) for r in jobs})
            confirmed = [r for r in jobs if _applied(delegate, r.get("delegate_applied")) is True]
            unknown = [r for r in jobs if _applied(delegate, r.get("delegate_applied")) is None]
            status = PASS if confirmed else (WARN if unknown else FAIL)
            evidence.append({"delegate": delegate, "device": device or "(any)", "ok_jobs": len(jobs),
                             "applied": applied, "status": status})
    status = max((e["status"] for e in evidence), key=_RANK.__getitem__)
    bad = [e for e in evidence if e["status"] != PASS]
    if not bad:
        message = f"every required delegate really ran: {', '.join(delegates)}"
    else:
        message = "; ".join(f"{e['delegate']} on {e['device']}: " + (
            "no finished job" if not e["ok_jobs"] else f"applied {', '.join(e['applied'])}") for e in bad)
    return RuleResult("require_delegates", status, list(delegates),
                      sorted({r["delegate"] for r in ok_runs}), message, tuple(evidence))


def _applied(requested: str, applied: Any) -> bool | None:
    """Did the runtime really apply ``requested``? None when the runner could not tell, or when the
    job was kept unproven ("gpu (unproven)") or ran partly on it ("gpu (partial)") -- a WARN, never a PASS."""
    if requested in NO_DELEGATE:
        return True
    if applied in (None, "", "unknown") or str(applied).endswith(("unproven)", "(partial)")):
        return None
    # runners name an Edge TPU "edgetpu" whatever device option was asked for ("edgetpu:usb")
    return str(applied) in (requested.split(",")[0], requested.split(":", 1)[0])


def _jobs_rule(runs: list[dict]) -> RuleResult:
    ok = [r for r in runs if r["status"] == "ok"]
    failed = [r for r in runs if r["status"] != "ok"]
    evidence = tuple({"job": _job_dict(r), "status": r["status"], "stage": r.get("stage"), "error": r.get("error")}
                     for r in failed)
    if not ok:
        return RuleResult("jobs_completed", FAIL, None, 0, "no job finished: nothing to sign off", evidence)
    if failed:
        return RuleResult("jobs_completed", WARN, None, len(ok), f"{len(failed)} of {len(runs)} jobs failed: "
                          + "; ".join(f"{e['job']} ({e['stage']})" for e in evidence), evidence)
    return RuleResult("jobs_completed", PASS, None, len(ok), f"all {len(ok)} jobs finished")


# -- output ------------------------------------------------------------------------------------

def format_verdict(verdict: Verdict) -> str:
    """Lines a person reads: one per rule, then the verdict."""
    lines = [f"{r.status:4}  {r.rule}: {r.message}" for r in verdict.rules]
    lines.append(f"verdict: {verdict.verdict}  (policy: {verdict.policy.source})")
    return "\n".join(lines)


def write_junit(verdict: Verdict, path: Path) -> Path:
    """JUnit XML with one testcase per rule; FAIL -> <failure>, WARN -> a WARNING in <system-out>."""
    import xml.etree.ElementTree as ET

    failures = sum(r.status == FAIL for r in verdict.rules)
    suites = ET.Element("testsuites", name="qskew signoff", tests=str(len(verdict.rules)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=f"qskew signoff {verdict.run_dir}",
                          tests=str(len(verdict.rules)), failures=str(failures), errors="0", skipped="0")
    for r in verdict.rules:
        case = ET.SubElement(suite, "testcase", classname="qskew.signoff", name=r.rule)
        if r.status == FAIL:
            ET.SubElement(case, "failure", message=r.message, type="PolicyViolation").text = _evidence_text(r)
        out = ("WARNING: " if r.status == WARN else "") + r.message
        ET.SubElement(case, "system-out").text = out + "\n" + _evidence_text(r)
    ET.indent(suites)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        from harness.errors import ResultsError

        raise ResultsError(f"cannot write JUnit XML {path}: {exc}") from exc
    return path


def _evidence_text(r: RuleResult) -> str:
    import json

    return "\n".join(json.dumps(e, default=str, allow_nan=True) for e in r.evidence)


def _job(row) -> str:
    return f"{row.variant} / {row.target} / {row.delegate}"


def _job_dict(row: Mapping[str, Any]) -> str:
    return f"{row['variant']} / {row['target']} / {row['delegate']}"


def _pp(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.2f} pp"
