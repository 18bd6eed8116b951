"""``qskew demo``: the built-in dataset and model, every variant, on the local target.

    qskew demo                                   # small_cnn on digits-groups, all six variants
    qskew demo --model mobilenet_v2 --variants fp32,int8 --delegates xnnpack,reference
    qskew demo --dataset adult --model mlp       # UCI Adult: tables per sex, race and sex x race
    qskew demo --board aarch64 --variants fp32,int8   # also on an emulated ARM board, then board vs host

With ``--board ARCH`` the variants run on the local target and on the board device ``board-ARCH``
(built or reused from qskew's cache; needs root) with the xnnpack, builtin and reference kernels
unless ``--delegates`` says otherwise, and a last table sets each job on the board against the same
job on the host, per group, in output quantization steps (``harness.target_compare``).
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common

BOARD_DELEGATES = ("xnnpack", "builtin", "reference")  # the CPU kernels both a host and a board have
HOST_TARGET = "local"


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
    d.add_argument("--delegates", default=None, help="comma-separated delegates (default: xnnpack; with "
                   f"--board: {','.join(BOARD_DELEGATES)})")
    d.add_argument("--board", default=None, metavar="ARCH", choices=("aarch64", "armv7l"),
                   help="also run on an emulated ARM board (aarch64 or armv7l) and compare it with the host")
    _common.add_run_flags(d)
    d.set_defaults(func=cmd_demo, writes_run=run_dir)  # TensorFlow only on a cache miss


def run_dir(args) -> Path:
    """The run directory ``qskew demo`` writes (its lock is taken before anything slow)."""
    return args.out or _common.default_run_dir(f"demo-{args.model}")


def cmd_demo(args) -> int:
    from harness import config

    name = f"demo-{args.model}" + ("" if args.dataset == config.DEFAULT_DATASET else f"-{args.dataset}")
    delegates = args.delegates or (",".join(BOARD_DELEGATES) if args.board else "xnnpack")
    raw = {"experiment": {"name": name}, "model": {"name": args.model},
           "data": {"dataset": args.dataset}, "run": {"delegates": _common.csv_list(delegates)}}
    if args.board:
        args.device = [HOST_TARGET, f"board-{args.board}"] + [d for d in args.device or []
                                                              if d not in (HOST_TARGET, f"board-{args.board}")]
        args.out = args.out or _common.default_run_dir(name, f"-board-{args.board}")
    if args.dataset == "adult":
        raw["data"] |= {"groups": ["sex", "race"], "intersections": True}
    if args.variants:
        raw["quantize"] = {"variants": _common.csv_list(args.variants)}
    code = _common.run_experiment(config.from_dict(raw, source="qskew demo"), args)
    if args.board and not args.json:
        _print_board_table(args.out, f"board-{args.board}")
    return code


def _print_board_table(out, device: str) -> None:
    from harness import rundir
    from harness.target_compare import format_target_table, target_table

    print()
    print(format_target_table(target_table(rundir.read_run(out), HOST_TARGET, device), HOST_TARGET, device))
