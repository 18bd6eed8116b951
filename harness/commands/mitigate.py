"""``qskew mitigate``: quantization-aware training and group-aware calibration as new variants.

    qskew mitigate                                  # the demo's model and data, default options
    qskew mitigate exp.toml --group-weighted-loss --epochs 5 --out runs/mit
    qskew mitigate --no-qat                          # only balanced vs plain calibration

Writes a run directory like ``qskew run`` (the mitigated variants next to int8 and mixed) and
prints the before/after table (``harness.mitigate.table``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import _common

DEMO_VARIANTS = ["int8", "mixed"]  # the baselines; mitigate adds its own variants next to them


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
    from harness.mitigate import options as o

    m = sub.add_parser(
        "mitigate", help="QAT and group-aware calibration as variants, before/after per group",
        description="Fine-tune the FP32 model with quantization-aware training (tfmot, in a child "
                    "process) and export it as int8-qat, mixed-qat and fp32-qat; build an int8 "
                    "calibrated on a group-balanced set; run them next to int8 and mixed and print "
                    "the per-group drop before and after, with 95 % intervals.",
        epilog="Drops are against the original FP32 model. fp32-qat shows what fine-tuning alone "
               "changed. Without EXPERIMENT the demo's model (small_cnn) and data are used.")
    m.add_argument("experiment", nargs="?", type=Path, default=None,
                   help="EXPERIMENT.toml (default: the demo: small_cnn on digits-groups)")
    m.add_argument("--qat", action=argparse.BooleanOptionalAction, default=True,
                   help="quantization-aware training (default: on)")
    m.add_argument("--balanced-sampling", action=argparse.BooleanOptionalAction, default=None,
                   help="QAT epochs draw every group equally often (default: on with --qat)")
    m.add_argument("--group-weighted-loss", action=argparse.BooleanOptionalAction, default=False,
                   help="weight the QAT loss by inverse group frequency (default: off; it compounds "
                        "with balanced sampling)")
    m.add_argument("--keep-layers", default=None, metavar="REGEX",
                   help="Keras layers (regex on names) kept float during QAT and raised to 16-bit "
                        "activations in mixed-qat (default: the layers the mixed variant raises; '' = none)")
    m.add_argument("--epochs", type=int, default=o.DEFAULT_EPOCHS,
                   help=f"QAT fine-tuning epochs (default {o.DEFAULT_EPOCHS})")
    m.add_argument("--learning-rate", type=float, default=o.DEFAULT_LEARNING_RATE,
                   help=f"QAT learning rate, Adam (default {o.DEFAULT_LEARNING_RATE:g})")
    m.add_argument("--calibration-compare", action=argparse.BooleanOptionalAction, default=True,
                   help="add int8 calibrated on a group-balanced set next to the plain int8 (default: on)")
    m.add_argument("--qat-timeout", type=float, default=o.QAT_TIMEOUT_S, metavar="SECONDS",
                   help=f"give up on the QAT process after this long (default {o.QAT_TIMEOUT_S:.0f})")
    _common.add_run_flags(m)
    m.set_defaults(func=cmd_mitigate, heavy=True, writes_run=run_dir)


def run_dir(args) -> Path:
    """The run directory ``qskew mitigate`` writes (its lock is taken before anything slow)."""
    return args.out or _common.default_run_dir(_experiment(args.experiment).name, "-mitigate")


def cmd_mitigate(args) -> int:
    from harness import datasets
    from harness.mitigate.mitigate import mitigate
    from harness.mitigate.table import before_after, format_before_after, to_json

    options = _options(args)
    exp = _common.with_devices(_experiment(args.experiment), args)
    progress, echo = _common.progress(args), _common.echo(args)
    out = args.out or run_dir(args)
    echo(f"dataset: {exp.data.dataset}")
    dataset = datasets.load(exp.data.dataset, exp.data.table_options())
    source = _common.model_source(exp, dataset, progress, echo)
    result = mitigate(exp, dataset, source, out, options, progress=progress, echo=echo,
                      build=builtin_build(source))
    table = before_after(out)
    if args.json:
        _common.print_json({"run_dir": str(out), "options": options.to_json(),
                            "variants": [a.variant for a in result.artifacts],
                            "kept_float_layers": list(result.keep.layers) if result.keep else [],
                            "qat": result.qat.to_json() if result.qat else None,
                            "qat_from_cache": result.qat_cached,
                            "before_after": to_json(table)})
    else:
        print()
        print(format_before_after(table))
        print(f"\nrun directory: {out}  (HTML: qskew report {out})")
    return 0


def builtin_build(source):
    """A built-in model's build function, which QAT rebuilds it with (None for a user model)."""
    import models

    desc = source.description
    return models.get(desc["name"]).build if desc.get("source") == "builtin" else None


def _options(args):
    from harness.mitigate.options import MitigationOptions

    balanced = args.qat if args.balanced_sampling is None else args.balanced_sampling
    return MitigationOptions(qat=args.qat, balanced_sampling=balanced,
                             group_weighted_loss=args.group_weighted_loss,
                             keep_layers_regex=args.keep_layers, epochs=args.epochs,
                             learning_rate=args.learning_rate,
                             calibration_compare=args.calibration_compare, timeout_s=args.qat_timeout)


def _experiment(path: Path | None):
    from harness import config

    if path is not None:
        return config.load(path)
    raw = {"experiment": {"name": f"mitigate-{config.DEFAULT_MODEL}"},
           "model": {"name": config.DEFAULT_MODEL}, "quantize": {"variants": DEMO_VARIANTS}}
    return config.from_dict(raw, source="qskew mitigate")
