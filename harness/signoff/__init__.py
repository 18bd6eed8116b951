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
    attributes = ["sex", "race"]     # group attributes whose groups decide PASS/FAIL (default: all)
    allow_failed_jobs = false        # true: planned jobs that failed or are missing WARN instead of FAIL

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
  ("gpu (partial)"). "reference" and "builtin" need no applied delegate. Its evidence names the
  runtimes and versions of the jobs (``runtimes``), and its message says when jobs ran on different
  runtimes: even the reference kernels are not bit-identical across runtime versions.
* ``jobs_completed`` (always): judges the plan, not the files. The manifest's ``plan`` lists every
  job the run set out to do (variants x devices x delegates, including the jobs of a device whose
  connection failed, over every session of a resumed run); each planned job that is missing (never
  started, interrupted, or its device unreachable) or failed is named. FAIL if any is, or if no job
  finished; with ``allow_failed_jobs = true`` those jobs give WARN instead (no finished job is
  still FAIL). A run written before the plan was recorded is judged on its summary's jobs.

Group attributes and intersections (``harness.metrics.attributes``): with several attributes
(``groups = ["sex", "race"]``) the first four rules are judged per job *and attribute*, each
attribute's groups on their own (the majority of the flip-rate rule is the attribute's largest
group); evidence names groups as "sex=Female". Groups below ``min_group_size`` are flagged, never
merged. Intersectional cells ("sex\u00d7race=Female\u00d7Other", small by nature: Adult's smallest
has 46 test samples) are reported with their intervals but can only WARN: a result that would FAIL
on a cell WARNs instead, so the attribute-level rules decide PASS/FAIL. The policy key
``attributes = ["sex"]`` names the attributes that decide; the others are treated like cells.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from harness.errors import ConfigError
from harness.metrics.attributes import qualified
from harness.signoff.jobs import jobs_rule
from harness.signoff.policy import DEFAULT_POLICY, POLICY_KEYS, Policy, load_policy, parse_policy
from harness.signoff.verdict import (_RANK, EXIT_FAIL, EXIT_PASS, EXIT_WARN, FAIL, MIN_FLIPS, NO_DELEGATE, PASS,
                                     WARN, RuleResult, Verdict)

__all__ = ["DEFAULT_POLICY", "EXIT_FAIL", "EXIT_PASS", "EXIT_WARN", "FAIL", "MIN_FLIPS", "NO_DELEGATE", "PASS",
           "POLICY_KEYS", "WARN", "Policy", "RuleResult", "Verdict", "format_verdict", "judge", "load_policy",
           "parse_policy", "signoff", "write_junit"]

if TYPE_CHECKING:
    from harness.metrics.attributes import Attributes
    from harness.metrics.stats import StatRows, Stats

_NOT_JUDGED = "an intersection, or not in the policy's attributes"


# -- judging -----------------------------------------------------------------------------------

def signoff(run_dir: Path, policy: Policy, n_resamples: int | None = None, seed: int | None = None) -> Verdict:
    """Read ``run_dir``, compute its statistics and judge them against ``policy``.

    The run is read light (``harness.rundir.light``: JSON and CSV, each group's cell counts from
    the stored metrics) so that sign-off imports neither pandas nor pyarrow (nor scipy: no rule
    judges a McNemar p-value, so none is computed); a run that cannot be
    read so (schema 1, no group counts in its manifest, jobs scored against different reference
    outputs: ``harness.rundir.light``) is read in full and its cells recomputed from the stored
    logits. Both give the same cells, so the same statistics and verdict.

    Example::

        verdict = signoff(Path("runs/demo"), load_policy(None))
        print(format_verdict(verdict))
    """
    from harness.metrics import stats as st
    from harness.rundir.light import read_light

    n_resamples = st.N_RESAMPLES if n_resamples is None else n_resamples   # 0 is refused, not the default
    seed = st.SEED if seed is None else seed
    light = read_light(Path(run_dir))
    if light is not None:
        # no rule judges a p-value: without McNemar, scipy is never imported
        return judge(light, st.cell_stats(light.cells, n_resamples, seed, mcnemar=False), policy)
    from harness.rundir import read_run

    run = read_run(Path(run_dir))
    return judge(run, st.run_stats(run, n_resamples=n_resamples, seed=seed), policy)


def judge(run: "JudgedRun", stats: "Stats | StatRows", policy: Policy) -> Verdict:
    """Apply every judged rule of ``policy`` to a run (``RunData`` or ``LightRun``) and its
    statistics (DataFrames or rows: judged as rows)."""
    from harness.metrics.stats import CONFIDENCE, N_RESAMPLES, SEED

    named = _named_attributes(policy, run)
    rows = stats.rows()
    rules = []
    if policy.max_worst_group_drop is not None:
        rules.append(_limit_rule("max_worst_group_drop", "worst_group_drop", "worst_group",
                                 policy.max_worst_group_drop, policy.judge_on_upper_bound, rows.disparity, named))
    if policy.max_psi is not None:
        rules.append(_limit_rule("max_psi", "psi", "psi_group", policy.max_psi, policy.judge_on_upper_bound,
                                 rows.disparity, named))
    if policy.max_flip_rate_ratio is not None:
        rules.append(_flip_ratio_rule(policy.max_flip_rate_ratio, rows.groups, named))
    if policy.min_group_size is not None:
        rules.append(_group_size_rule(policy.min_group_size, run.test_group_sizes(), named))
    if policy.require_devices is not None:
        rules.append(_devices_rule(policy.require_devices, run.summary["runs"]))
    if policy.require_delegates is not None:
        rules.append(_delegates_rule(policy.require_delegates, policy.require_devices, run.summary["runs"]))
    rules.append(jobs_rule(run.manifest.get("plan"), run.summary["runs"], policy.allow_failed_jobs))
    verdict = max((r.status for r in rules), key=_RANK.__getitem__)
    first = rows.disparity[0] if rows.disparity else {"n_resamples": N_RESAMPLES, "seed": SEED}
    settings = {"confidence": CONFIDENCE, "n_resamples": int(first["n_resamples"]), "seed": int(first["seed"])}
    return Verdict(verdict=verdict, rules=tuple(rules), policy=policy, run_dir=str(run.path), statistics=settings)


class JudgedRun(Protocol):
    """What :func:`judge` needs of a run (``harness.rundir.RunData`` and ``LightRun`` have it)."""

    path: Path
    manifest: dict
    summary: dict

    @property
    def attributes(self) -> "Attributes": ...

    def test_group_sizes(self) -> dict[tuple[str, str], int]: ...


def _named_attributes(policy: Policy, run: JudgedRun) -> tuple[str, ...]:
    """The attributes whose groups decide PASS/FAIL: the policy's ``attributes``, else every one."""
    known = run.attributes.names
    unknown = [a for a in policy.attributes or () if a not in known]
    if unknown:
        raise ConfigError(f"{policy.source}: attributes names {unknown[0]!r}, which run {run.path} does not have; "
                          f"its attributes: {', '.join(known)}")
    return tuple(policy.attributes or known)


def _capped(status: str, attribute: str, named: tuple[str, ...]) -> str:
    """Intersectional cells, and attributes the policy does not name, can WARN but never FAIL."""
    return WARN if status == FAIL and attribute not in named else status


def _limit_rule(rule: str, column: str, group_column: str, limit: float, upper: bool,
                disparity: "Sequence[Mapping[str, Any]]", named: tuple[str, ...]) -> RuleResult:
    evidence = []
    for r in disparity:
        point, lo, hi = r[column], r[f"{column}_lo"], r[f"{column}_hi"]
        judged = hi if upper else point
        status = _capped(FAIL if judged > limit else (WARN if hi > limit else PASS), r["attribute"], named)
        evidence.append({"job": _job(r), "attribute": r["attribute"], "group": qualified(r["attribute"], r[group_column]),
                         "value": point, "lo": lo, "hi": hi, "judged": judged, "status": status})
    if not evidence:
        return RuleResult(rule, PASS, limit, None, "no finished job to judge (see jobs_completed)")
    top = max(evidence, key=lambda e: (_RANK[e["status"]], e["judged"]))
    basis = "upper bound" if upper else "point estimate"
    message = (f"{column} {_pp(top['value'])} [{_pp(top['lo'])}, {_pp(top['hi'])}] ({top['group']}, "
               f"{top['job']}); judged on the {basis}: {_pp(top['judged'])} vs limit {_pp(limit)}")
    if top["status"] == WARN:
        message += ("; the interval reaches past the limit" if top["judged"] <= limit else
                    f"; {top['attribute']} is not judged ({_NOT_JUDGED}): WARN, not FAIL")
    return RuleResult(rule, top["status"], limit, top["judged"], message, tuple(evidence))


def _flip_ratio_rule(limit: float, groups: "Sequence[Mapping[str, Any]]", named: tuple[str, ...]) -> RuleResult:
    evidence = []
    by_attribute: dict[tuple, list] = {}
    for r in groups:
        if r["scope"] != "overall":
            by_attribute.setdefault((r["variant"], r["target"], r["delegate"], r["attribute"]), []).append(r)
    for key in sorted(by_attribute):
        part = sorted(by_attribute[key], key=lambda r: (-r["n"], r["group"]))   # the majority first
        majority, job, attribute = part[0], key[:3], key[3]
        for r in part[1:]:
            ratio = _ratio(r["flip_rate"], majority["flip_rate"])
            status = _capped(PASS if ratio <= limit else (FAIL if r["flips"] >= MIN_FLIPS else WARN), attribute, named)
            evidence.append({"job": " / ".join(job), "attribute": attribute, "group": qualified(attribute, r["group"]),
                             "majority": qualified(attribute, majority["group"]),
                             "flip_rate": r["flip_rate"], "majority_flip_rate": majority["flip_rate"],
                             "flips": int(r["flips"]), "ratio": ratio, "status": status})
    if not evidence:
        return RuleResult("max_flip_rate_ratio", PASS, limit, None, "no job with two or more groups to compare")
    top = max(evidence, key=lambda e: (_RANK[e["status"]], e["ratio"]))
    message = (f"{top['group']} flips {100 * top['flip_rate']:.2f} % vs majority {top['majority']} "
               f"{100 * top['majority_flip_rate']:.2f} % ({top['job']}): ratio {top['ratio']:.2f} vs limit {limit:g}")
    if top["status"] == WARN:
        message += (f"; only {top['flips']} flips (< {MIN_FLIPS}), too few to tell from noise" if top["flips"] < MIN_FLIPS
                    else f"; {top['attribute']} is not judged ({_NOT_JUDGED}): WARN, not FAIL")
    return RuleResult("max_flip_rate_ratio", top["status"], limit, top["ratio"], message, tuple(evidence))


def _ratio(rate: float, majority_rate: float) -> float:
    if majority_rate > 0:
        return float(rate / majority_rate)
    return 1.0 if rate == 0 else math.inf


def _group_size_rule(limit: int, sizes: Mapping[tuple[str, str], int], named: tuple[str, ...]) -> RuleResult:
    """FAIL for a small group of a judged attribute; WARN for a small cell (flagged, never merged)."""
    if not sizes:
        return RuleResult("min_group_size", FAIL, limit, None, "the run holds no test samples")
    status = {k: PASS if n >= limit else _capped(FAIL, k[0], named) for k, n in sizes.items()}
    evidence = tuple({"attribute": a, "group": qualified(a, g), "n": n, "status": status[(a, g)]}
                     for (a, g), n in sorted(sizes.items()))
    small = [e for e in evidence if e["status"] != PASS]
    smallest = min(evidence, key=lambda e: (e["n"], e["group"]))
    if not small:
        return RuleResult("min_group_size", PASS, limit, smallest["n"],
                          f"smallest group {smallest['group']} has n={smallest['n']} >= {limit}", evidence)
    verdict = max((e["status"] for e in small), key=_RANK.__getitem__)
    message = "groups below the limit: " + ", ".join(f"{e['group']} (n={e['n']})" for e in small) + f"; limit {limit}"
    if verdict == WARN:
        message += f" (cells and attributes not judged ({_NOT_JUDGED}): WARN, not FAIL)"
    return RuleResult("min_group_size", verdict, limit, smallest["n"], message, evidence)


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
                             "applied": applied, "runtimes": _runtimes(jobs), "status": status})
    status = max((e["status"] for e in evidence), key=_RANK.__getitem__)
    bad = [e for e in evidence if e["status"] != PASS]
    if not bad:
        message = f"every required delegate really ran: {', '.join(delegates)}"
    else:
        message = "; ".join(f"{e['delegate']} on {e['device']}: " + (
            "no finished job" if not e["ok_jobs"] else f"applied {', '.join(e['applied'])}") for e in bad)
    runtimes = sorted({rt for e in evidence for rt in e["runtimes"]})
    if len(runtimes) > 1:  # the same kernels differ by output steps across runtime versions
        message += f" (jobs on different runtimes: {'; '.join(runtimes)})"
    elif runtimes:
        message += f" (runtime: {runtimes[0]})"
    return RuleResult("require_delegates", status, list(delegates),
                      sorted({r["delegate"] for r in ok_runs}), message, tuple(evidence))


def _runtimes(jobs: list[dict]) -> list[str]:
    """The runtimes and versions of ``jobs`` ("ai_edge_litert 2.3.0"; "unknown" where the runner did
    not say), so that a verdict over jobs on several targets says which kernels it compared."""
    return sorted({f"{r.get('runtime') or 'unknown'} {r.get('runtime_version') or ''}".strip() for r in jobs})


def _applied(requested: str, applied: Any) -> bool | None:
    """Did the runtime really apply ``requested``? None when the runner could not tell, or when the
    job was kept unproven ("gpu (unproven)") or ran partly on it ("gpu (partial)") -- a WARN, never a PASS."""
    if requested in NO_DELEGATE:
        return True
    if applied in (None, "", "unknown") or str(applied).endswith(("unproven)", "(partial)")):
        return None
    # runners name an Edge TPU "edgetpu" whatever device option was asked for ("edgetpu:usb")
    return str(applied) in (requested.split(",")[0], requested.split(":", 1)[0])


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


def _job(row: Mapping[str, Any]) -> str:
    return f"{row['variant']} / {row['target']} / {row['delegate']}"


def _pp(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.2f} pp"
