"""``qskew compare-delegates``: one variant on a list of delegates, side by side, per group.

    qskew compare-delegates --delegates xnnpack,reference,builtin            # the demo, local
    qskew compare-delegates exp.toml --device pixel7 --delegates xnnpack,gpu,nnapi --variant int8
    qskew compare-delegates --device local --device simulated --delegates xnnpack,builtin --repeat 3

The CPU reference kernels are the baseline a delegate is judged against, so ``reference`` is added
to the list when it is missing. Writes a normal run directory (its metrics have the drop split
into ``drop_quantization`` and ``drop_delegate``) plus ``delegates.csv``, the printed table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.commands import _common

DEFAULT_VARIANT = "int8"


def register(sub) -> None:
    """Add this module's command to the ``qskew`` subparsers."""
    c = sub.add_parser(
        "compare-delegates", help="one variant on several delegates: per-group table vs FP32 and reference kernels",
        description="Run one variant with each delegate on each chosen device and print, per delegate "
                    "and group: accuracy, the drop against FP32 split into its quantization part (FP32 -> "
                    "the variant on the CPU reference kernels) and its delegate part (reference kernels -> "
                    "the delegate), the flip rate and largest logit difference against the reference "
                    "kernels, and latency. A delegate that cannot load on a device is a row saying so.",
        epilog="Without EXPERIMENT the demo's model (small_cnn) and data are used. 'reference' is added "
               "to --delegates when missing: it is the baseline. --repeat N runs each job N times to "
               "show the device's run-to-run noise next to each delegate's difference.")
    c.add_argument("experiment", nargs="?", type=Path, default=None,
                   help="EXPERIMENT.toml (default: the demo: small_cnn on digits-groups)")
    c.add_argument("--delegates", required=True,
                   help="comma-separated: xnnpack, reference, builtin, gpu, nnapi[:accelerator], hexagon, "
                        "edgetpu[:device], external:<path.so>[,k=v...]")
    c.add_argument("--variant", default=None,
                   help=f"the variant to compare (default {DEFAULT_VARIANT}, or the experiment's only variant)")
    c.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="run each job N times to measure run-to-run noise (default: [run] repeat, 1)")
    _common.add_run_flags(c)
    c.set_defaults(func=cmd_compare_delegates, heavy=True, writes_run=run_dir)


def run_dir(args) -> Path:
    """The run directory ``qskew compare-delegates`` writes (locked before anything slow)."""
    return args.out or _common.default_run_dir(_experiment(args).name, "-delegates")


def cmd_compare_delegates(args) -> int:
    from harness import datasets, rundir
    from harness.errors import QskewError
    from harness.evaluate import evaluate

    exp = _common.with_devices(_experiment(args), args)
    variant = exp.quantize.variants[0]
    progress, echo = _common.progress(args), _common.echo(args)
    out = args.out or run_dir(args)
    echo(f"comparing delegates {', '.join(exp.run.delegates)} on variant {variant}")
    dataset = datasets.load(exp.data.dataset, exp.data.table_options())
    source = _common.model_source(exp, dataset, progress, echo)
    try:
        evaluate(exp, dataset, source, out, progress=progress, echo=echo)
    except QskewError:  # a device failed: show what the others measured, then report it
        _show(out, variant, exp.run.delegates, args, echo, partial=True)
        raise
    table = _show(out, variant, exp.run.delegates, args, echo)
    rundir.atomic_write(out / rundir.DELEGATES_FILE, lambda p: table.to_csv(p, index=False))
    return 0


def _show(out: Path, variant: str, delegates, args, echo, partial: bool = False):
    from harness import rundir
    from harness.delegate_compare import delegate_table, format_delegate_table

    if not (out / rundir.SUMMARY_DIR).exists():
        return None
    table = delegate_table(rundir.read_run(out), variant, delegates)
    if partial:
        echo(format_delegate_table(table, variant))
        return table
    if args.json:
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        _common.print_json({"run_dir": str(out), "variant": variant, "rows": records})
    else:
        print()
        print(format_delegate_table(table, variant))
        print(f"\nrun directory: {out}")
    return table


def _experiment(args):
    """The experiment (file or demo) narrowed to one variant and the delegates asked for."""
    from harness import config
    from harness.errors import ConfigError
    from harness.metrics.groups import BASELINE_DELEGATE

    if args.experiment is not None:
        exp = config.load(args.experiment)
    else:
        exp = config.from_dict({"experiment": {"name": f"delegates-{config.DEFAULT_MODEL}"},
                                "model": {"name": config.DEFAULT_MODEL}}, source="qskew compare-delegates")
    variant = args.variant or (exp.quantize.variants[0] if args.experiment is not None
                               and len(exp.quantize.variants) == 1 else DEFAULT_VARIANT)
    delegates = _common.csv_list(args.delegates)
    if not delegates:
        raise ConfigError("--delegates is empty; name at least one delegate")
    if BASELINE_DELEGATE not in delegates:
        delegates.append(BASELINE_DELEGATE)
    repeat = exp.run.repeat if args.repeat is None else args.repeat
    exp = dataclasses.replace(
        exp, quantize=dataclasses.replace(exp.quantize, variants=(variant,)),
        run=dataclasses.replace(exp.run, delegates=tuple(delegates), repeat=repeat))
    config.validate(exp)
    return exp
