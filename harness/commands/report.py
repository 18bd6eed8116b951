"""``qskew report RUN_DIR``: one self-contained HTML report of a run directory (``harness.report``)."""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew report`` to the ``qskew`` subparsers."""
    rp = sub.add_parser("report", help="one self-contained HTML report of a run directory",
                        description="Write one HTML file (charts embedded, opens from an email) and the "
                                    "charts as PNG files next to it.")
    rp.add_argument("run_dir", type=Path, help="RUN_DIR")
    rp.add_argument("--out", type=Path, default=None,
                    help="HTML file (default RUN_DIR/report/report.html); PNGs go next to it")
    _common.add_stats_flags(rp)
    rp.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from harness.report.render import write_report

    files = write_report(args.run_dir, args.out, **_common.stats_options(args))
    print(f"report: {files.html}")
    for png in files.pngs:
        print(f"chart:  {png}")
    return 0
