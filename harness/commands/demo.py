"""``qskew demo``: the built-in dataset and model, every variant, on the local target.

    qskew demo                                   # small_cnn on digits-groups, all six variants
    qskew demo --model mobilenet_v2 --variants fp32,int8 --delegates xnnpack,reference
    qskew demo --dataset adult --model mlp       # UCI Adult: tables per sex, race and sex x race
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew demo`` to the ``qskew`` subparsers."""
    d = sub.add_parser("demo", help="built-in dataset and model, all variants, local target",
                       description="Train (or load from the cache) a built-in model on its built-in dataset, "
                                   "convert every variant and print the per-group table.")
    d.add_argument("--model", default="small_cnn", help="built-in model: small_cnn (default), mobilenet_v2, mlp")
    d.add_argument("--dataset", default="digits-groups",
                   help="built-in dataset: digits-groups (default; images) or adult (tabular, groups sex and "
                        "race and their intersection; use --model mlp)")
    d.add_argument("--variants", default=None, help="comma-separated subset (default: all six)")
    d.add_argument("--delegates", default="xnnpack", help="comma-separated delegates (default: xnnpack)")
    _common.add_run_flags(d)
    d.set_defaults(func=cmd_demo, heavy=True, writes_run=run_dir)


def run_dir(args) -> Path:
    """The run directory ``qskew demo`` writes (its lock is taken before anything slow)."""
    return args.out or _common.default_run_dir(f"demo-{args.model}")


def cmd_demo(args) -> int:
    from harness import config

    name = f"demo-{args.model}" + ("" if args.dataset == config.DEFAULT_DATASET else f"-{args.dataset}")
    raw = {"experiment": {"name": name}, "model": {"name": args.model},
           "data": {"dataset": args.dataset}, "run": {"delegates": _common.csv_list(args.delegates)}}
    if args.dataset == "adult":
        raw["data"] |= {"groups": ["sex", "race"], "intersections": True}
    if args.variants:
        raw["quantize"] = {"variants": _common.csv_list(args.variants)}
    return _common.run_experiment(config.from_dict(raw, source="qskew demo"), args)
