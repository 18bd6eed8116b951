"""``qskew analyze RUN_DIR``: why groups lose differently (``harness.analysis.analyze``).

    qskew analyze runs/demo --variants int8 --power-iterations 10

Per group: loss, logit variance, gradient norm and Hessian curvature of the FP32 model and of each
variant's dequantized weights; per layer and group: the error of each variant's intermediate
tensors against FP32. Writes RUN_DIR/analysis.csv and layers.csv.
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew analyze`` to the ``qskew`` subparsers."""
    from harness.analysis.analyze import MAX_SAMPLES_PER_GROUP, POWER_ITERATIONS, PROBES, SEED

    a = sub.add_parser(
        "analyze", help="per group: loss, logit variance, gradient norm, Hessian; per layer: error vs FP32",
        description="For the FP32 Keras model and each variant's dequantized weights put back into it: per "
                    "group loss, logit variance, gradient norm, Hessian top eigenvalue (power iteration) and "
                    "trace (Hutchinson). For each variant's .tflite: per layer and group, RMSE and SNR of its "
                    "intermediate tensors against the FP32 layers. Writes RUN_DIR/analysis.csv and layers.csv.",
        epilog="The dequantized models carry the quantized WEIGHTS only; their activations stay float.")
    a.add_argument("run_dir", type=Path, help="RUN_DIR")
    a.add_argument("--variants", default=None, help="comma-separated (default: every variant of the run but fp32)")
    a.add_argument("--power-iterations", type=int, default=POWER_ITERATIONS,
                   help=f"Hessian-vector products for the top eigenvalue, at most (default {POWER_ITERATIONS})")
    a.add_argument("--probes", type=int, default=PROBES,
                   help=f"Rademacher probes of the Hessian trace (default {PROBES})")
    a.add_argument("--seed", type=int, default=SEED, help=f"sample draw, start vector and probes (default {SEED})")
    a.add_argument("--max-samples-per-group", type=int, default=MAX_SAMPLES_PER_GROUP,
                   help=f"test samples per group, drawn with --seed (default {MAX_SAMPLES_PER_GROUP})")
    _common.add_json_flag(a)
    a.add_argument("--no-progress", action="store_true", help="no progress lines")
    a.set_defaults(func=cmd_analyze, heavy=True)


def cmd_analyze(args) -> int:
    from harness.analysis.analyze import AnalyzeOptions, analyze, format_analysis, format_skew

    options = AnalyzeOptions(variants=tuple(_common.csv_list(args.variants)) if args.variants else None,
                             iterations=args.power_iterations, probes=args.probes, seed=args.seed,
                             max_samples_per_group=args.max_samples_per_group)
    echo = (lambda s: None) if args.no_progress else _common.echo(args)
    result = analyze(args.run_dir, options, echo=echo)
    if args.json:
        _common.print_json({"run_dir": str(args.run_dir), "files": [str(f) for f in result.files],
                            "minority": result.minority, "majority": result.majority,
                            "analysis": _records(result.analysis), "skew": _records(result.skew)})
        return 0
    print(format_analysis(result.analysis))
    print()
    print(format_skew(result.skew, result.minority, result.majority))
    print()
    print("written: " + ", ".join(str(f) for f in result.files))
    return 0


def _records(table) -> list[dict]:
    """Rows as JSON-ready dicts: NaN and +-inf become null (JSON has no such numbers)."""
    import math

    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
            for row in table.astype(object).to_dict(orient="records")]
