"""``qskew demo``: the built-in dataset and model, every variant, on the local target.

    qskew demo                                   # small_cnn on digits-groups, all six variants
    qskew demo --model mobilenet_v2 --variants fp32,int8 --delegates xnnpack,reference
"""

from __future__ import annotations

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew demo`` to the ``qskew`` subparsers."""
    d = sub.add_parser("demo", help="built-in dataset and model, all variants, local target",
                       description="Train (or load from the cache) a built-in model on its built-in dataset, "
                                   "convert every variant and print the per-group table.")
    d.add_argument("--model", default="small_cnn", help="built-in model: small_cnn (default), mobilenet_v2")
    d.add_argument("--variants", default=None, help="comma-separated subset (default: all six)")
    d.add_argument("--delegates", default="xnnpack", help="comma-separated delegates (default: xnnpack)")
    _common.add_run_flags(d)
    d.set_defaults(func=cmd_demo)  # TensorFlow only on a cache miss (logs.with_tensorflow)


def cmd_demo(args) -> int:
    from harness import config

    raw = {"experiment": {"name": f"demo-{args.model}"}, "model": {"name": args.model},
           "run": {"delegates": _common.csv_list(args.delegates)}}
    if args.variants:
        raw["quantize"] = {"variants": _common.csv_list(args.variants)}
    return _common.run_experiment(config.from_dict(raw, source="qskew demo"), args)
