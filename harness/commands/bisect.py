"""``qskew bisect RUN_DIR --job A --against B``: the first tensor where job A parts from job B.

    qskew bisect runs/board --job int8/board-aarch64/builtin --against int8/local/reference

Runs the chosen samples again on both jobs' devices, keeping every intermediate tensor, and writes
OUT/bisect.csv (default RUN_DIR/bisect); prints one line per group (``harness.bisect``).
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew bisect`` to the ``qskew`` subparsers."""
    from harness.bisect.select import PER_GROUP

    b = sub.add_parser(
        "bisect", help="where a job's intermediate tensors first differ from another job's, per group",
        description="Runs two jobs of a run again on their own devices with every intermediate tensor kept "
                    "and names, per sample and group, the first tensor where job A parts from job B. "
                    "Writes OUT/bisect.csv (default RUN_DIR/bisect).",
        epilog="Jobs are VARIANT/TARGET/DELEGATE as in the run's tables (split at the first two '/'). "
               "--samples: flipped (default; else samples whose logits differ; else the first per group), "
               "group:NAME (the same rule within one group) or N (the first N per group).")
    b.add_argument("run_dir", type=Path, help="RUN_DIR")
    b.add_argument("--job", required=True, help="job A, e.g. int8/board-aarch64/builtin")
    b.add_argument("--against", required=True, help="job B, the reference, e.g. int8/local/reference")
    b.add_argument("--samples", default="flipped", help="flipped | group:NAME | N (default flipped)")
    b.add_argument("--per-group", type=int, default=PER_GROUP,
                   help=f"at most this many samples per group (default {PER_GROUP})")
    b.add_argument("--out", type=Path, default=None, help="folder for bisect.csv (default RUN_DIR/bisect)")
    b.add_argument("--model-a", type=Path, default=None,
                   help="run job A with this .tflite instead of its variant's (a planted or fixed copy)")
    _common.add_json_flag(b)
    b.set_defaults(func=cmd_bisect, heavy=True)


def cmd_bisect(args) -> int:
    from harness.bisect.run import BisectOptions, bisect
    from harness.metrics.bisect import summary_lines

    options = BisectOptions(job_a=args.job, job_b=args.against, samples=args.samples, per_group=args.per_group,
                            out=args.out, model_a=args.model_a)
    result = bisect(args.run_dir, options, echo=(lambda s: None) if args.json else _common.echo(args))
    if args.json:
        _common.print_json({"file": str(result.file), "rule": result.choice.rule,
                            "summary": result.summary.to_dict(orient="records")})
        return 0
    print(f"{args.job} against {args.against}, {len(result.choice.ids)} samples ({result.choice.rule}):")
    for line in summary_lines(result.summary, result.choice.rule):
        print("  " + line)
    print(f"written: {result.file}")
    return 0
