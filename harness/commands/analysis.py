"""Analysis commands: ``qskew analyze`` and ``qskew suggest-mixed`` (``harness.analysis``).

Both read a run directory; nothing heavy is imported until a command runs.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    """Add this module's commands to the ``qskew`` subparsers."""
    from harness.analysis.analyze import MAX_SAMPLES_PER_GROUP, POWER_ITERATIONS, PROBES, SEED
    from harness.analysis.suggest import COMPARED, OUT_SUFFIX, TOP_K

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
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--no-progress", action="store_true", help="no progress lines")
    a.set_defaults(func=cmd_analyze, heavy=True)

    s = sub.add_parser(
        "suggest-mixed", help="raise the most group-skewed layers to 16-bit activations and measure it",
        description=f"Rank the int8 variant's layers by how much more the minority group loses than the "
                    f"majority (layers.csv, from qskew analyze, or computed now), build a mixed int8/int16 "
                    f"variant raising the top K, and evaluate {', '.join(COMPARED)} into a new run directory.")
    s.add_argument("run_dir", type=Path, help="RUN_DIR")
    s.add_argument("--top", type=int, default=TOP_K, help=f"layers to raise to 16 bits (default {TOP_K})")
    s.add_argument("--out", type=Path, default=None, help=f"new run directory (default RUN_DIR{OUT_SUFFIX})")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_suggest_mixed, heavy=True)


def cmd_analyze(args) -> int:
    from harness.analysis.analyze import AnalyzeOptions, analyze, format_analysis, format_skew
    from harness.cli import _csv, _echo, _print_json

    options = AnalyzeOptions(variants=tuple(_csv(args.variants)) if args.variants else None,
                             iterations=args.power_iterations, probes=args.probes, seed=args.seed,
                             max_samples_per_group=args.max_samples_per_group)
    echo = (lambda s: None) if args.no_progress else _echo(args)
    result = analyze(args.run_dir, options, echo=echo)
    if args.json:
        _print_json({"run_dir": str(args.run_dir), "files": [str(f) for f in result.files],
                     "minority": result.minority, "majority": result.majority,
                     "analysis": _records(result.analysis), "skew": _records(result.skew)})
        return 0
    print(format_analysis(result.analysis))
    print()
    print(format_skew(result.skew, result.minority, result.majority))
    print()
    print("written: " + ", ".join(str(f) for f in result.files))
    return 0


def cmd_suggest_mixed(args) -> int:
    from harness.analysis.suggest import format_suggestion, suggest_mixed
    from harness.cli import _echo, _print_json, _progress

    suggestion = suggest_mixed(args.run_dir, top=args.top, out=args.out, progress=_progress(args),
                               echo=_echo(args))
    if args.json:
        from harness.rundir.analysis_tables import read_suggestion

        _print_json(read_suggestion(suggestion.run_dir))
    else:
        print(format_suggestion(suggestion))
    return 0


def _records(table) -> list[dict]:
    """Rows as JSON-ready dicts: NaN and +-inf become null (JSON has no such numbers)."""
    import math

    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
            for row in table.astype(object).to_dict(orient="records")]
