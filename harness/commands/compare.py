"""``qskew compare RUN_A RUN_B``: what changed between two run directories, per job and group.

    qskew compare runs/before runs/after --json | jq '.rows[] | select(.group == "minority")'
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew compare`` to the ``qskew`` subparsers."""
    cp = sub.add_parser("compare", help="what changed between two run directories, per job and group",
                        description="Per job and group: the change in accuracy, drop and flip rate from "
                                    "RUN_A to RUN_B, with paired 95 % intervals when both ran the same "
                                    "test samples.")
    cp.add_argument("run_a", type=Path, help="RUN_A (before)")
    cp.add_argument("run_b", type=Path, help="RUN_B (after)")
    _common.add_json_flag(cp, "print the table as JSON records (everything else goes to stderr)")
    _common.add_stats_flags(cp)
    cp.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from harness.compare_runs import compare_runs, format_comparison

    comparison = compare_runs(args.run_a, args.run_b, **_common.stats_options(args))
    if args.json:
        table = comparison.table.astype(object).where(comparison.table.notna(), None)
        _common.print_json({"run_a": comparison.run_a, "run_b": comparison.run_b, "paired": comparison.paired,
                            "reason": comparison.reason, "rows": table.to_dict(orient="records")})
    else:
        print(format_comparison(comparison))
    return 0
