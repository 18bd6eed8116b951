"""``qskew suggest-mixed RUN_DIR``: raise the most group-skewed layers to 16 bits and measure it.

    qskew suggest-mixed runs/demo --top 3 --out runs/demo-mixed

Ranks the int8 variant's layers by how much more the minority group loses than the majority
(``harness.analysis.suggest``), builds the mixed int8/int16 variant and evaluates it.
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew suggest-mixed`` to the ``qskew`` subparsers."""
    from harness.analysis.suggest import COMPARED, OUT_SUFFIX, TOP_K

    s = sub.add_parser(
        "suggest-mixed", help="raise the most group-skewed layers to 16-bit activations and measure it",
        description=f"Rank the int8 variant's layers by how much more the minority group loses than the "
                    f"majority (layers.csv, from qskew analyze, or computed now), build a mixed int8/int16 "
                    f"variant raising the top K, and evaluate {', '.join(COMPARED)} into a new run directory.")
    s.add_argument("run_dir", type=Path, help="RUN_DIR")
    s.add_argument("--top", type=int, default=TOP_K, help=f"layers to raise to 16 bits (default {TOP_K})")
    s.add_argument("--out", type=Path, default=None, help=f"new run directory (default RUN_DIR{OUT_SUFFIX})")
    _common.add_json_flag(s)
    _common.add_progress_flag(s)
    s.set_defaults(func=cmd_suggest_mixed, heavy=True, writes_run=run_dir)


def run_dir(args) -> Path:
    """The new run directory ``qskew suggest-mixed`` writes (locked before anything slow)."""
    from harness.analysis.suggest import OUT_SUFFIX

    return args.out or args.run_dir.parent / f"{args.run_dir.name}{OUT_SUFFIX}"


def cmd_suggest_mixed(args) -> int:
    from harness.analysis.suggest import format_suggestion, suggest_mixed

    suggestion = suggest_mixed(args.run_dir, top=args.top, out=args.out, progress=_common.progress(args),
                               echo=_common.echo(args))
    if args.json:
        from harness.rundir.analysis_tables import read_suggestion

        _common.print_json(read_suggestion(suggestion.run_dir))
    else:
        print(format_suggestion(suggestion))
    return 0
