"""``qskew signoff RUN_DIR``: judge a run against a policy (``harness.signoff``): PASS, WARN or FAIL.

    qskew signoff runs/demo --policy policy.toml --junit ci/signoff.xml

Writes RUN_DIR/signoff.json and JUnit XML; the exit code is the verdict (see the epilog).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew signoff`` to the ``qskew`` subparsers."""
    so = sub.add_parser("signoff", help="judge a run against a policy: PASS, WARN or FAIL",
                        description="Judge RUN_DIR against a policy; write RUN_DIR/signoff.json and JUnit XML.",
                        epilog="exit codes: 0 PASS; 0 WARN, with a line starting 'WARNING:' on stderr; "
                               "1 FAIL; 2 the run or the policy could not be read. WARN: a limit holds on the "
                               "point estimate but not on its 95 % interval, a flip-rate ratio rests on < 6 flips, "
                               "an applied delegate is unknown, or planned jobs did not finish under allow_failed_jobs "
                               "(without it, a planned job that is missing or failed is a FAIL).")
    so.add_argument("run_dir", type=Path, help="RUN_DIR")
    so.add_argument("--policy", type=Path, default=None,
                    help="POLICY.toml (default: the policy shipped in harness/policies/default.toml)")
    so.add_argument("--junit", type=Path, default=None, help="JUnit XML file (default RUN_DIR/signoff-junit.xml)")
    _common.add_json_flag(so, "print the saved verdict as JSON (everything else goes to stderr)")
    _common.add_stats_flags(so)
    so.set_defaults(func=cmd_signoff)


def cmd_signoff(args) -> int:
    from harness import rundir, signoff

    policy = signoff.load_policy(args.policy)
    verdict = signoff.signoff(args.run_dir, policy, **_common.stats_options(args))
    rundir.write_signoff(args.run_dir, verdict.to_json())
    junit = signoff.write_junit(verdict, args.junit or rundir.signoff_junit_path(args.run_dir))
    if args.json:
        _common.print_json(rundir.read_signoff(args.run_dir))
    else:
        print(signoff.format_verdict(verdict))
        print(f"written: {args.run_dir / rundir.SIGNOFF_FILE}, {junit}")
    if verdict.verdict == signoff.WARN:
        reasons = "; ".join(f"{r.rule}: {r.message}" for r in verdict.rules if r.status == signoff.WARN)
        print(f"WARNING: sign-off verdict is WARN ({reasons})", file=sys.stderr)
        return signoff.EXIT_WARN
    return signoff.EXIT_FAIL if verdict.verdict == signoff.FAIL else signoff.EXIT_PASS
