"""``qskew convert``: write the TFLite variants of a model into a folder, without evaluating them.

    qskew convert --variants int8,fp32 --out variants/
    qskew convert --model my_model.keras --dataset my_data.npz --calibration-strategy balanced
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew convert`` to the ``qskew`` subparsers."""
    c = sub.add_parser("convert", help="write the TFLite variants of a model")
    c.add_argument("--model", default="small_cnn", help="built-in model name, or a .keras file / SavedModel folder")
    c.add_argument("--dataset", default="digits-groups", help="dataset for training/calibration (default digits-groups)")
    c.add_argument("--variants", default=None, help="comma-separated (default: all six)")
    c.add_argument("--calibration-size", type=int, default=256,
                   help="representative samples for the integer variants (default 256)")
    c.add_argument("--calibration-strategy", default="random", help="random, proportional or balanced")
    c.add_argument("--out", type=Path, default=Path("variants"), help="folder for the .tflite files")
    _common.add_json_flag(c)
    _common.add_progress_flag(c)
    c.set_defaults(func=cmd_convert, heavy=True)


def cmd_convert(args) -> int:
    from harness import config, datasets
    from harness.evaluate import build_variants

    variants = _common.csv_list(args.variants) if args.variants else list(config.ALL_VARIANTS)
    model_is_path = Path(args.model).exists()
    exp = config.from_dict({"model": {"path": args.model} if model_is_path else {"name": args.model},
                            "data": {"dataset": args.dataset},
                            "quantize": {"variants": variants, "calibration_size": args.calibration_size,
                                         "calibration_strategy": args.calibration_strategy}},
                           source="qskew convert")
    progress, echo = _common.progress(args), _common.echo(args)
    dataset = datasets.load(exp.data.dataset, exp.data.table_options())
    source = _common.model_source(exp, dataset, progress, echo)
    args.out.mkdir(parents=True, exist_ok=True)
    _, artifacts = build_variants(exp, source.model, dataset.subset("train"), progress, echo)
    rows = []
    for art in artifacts:
        dest = None
        if art.ok:
            dest = args.out / f"{art.variant}.tflite"
            dest.write_bytes(Path(art.path).read_bytes())
        rows.append({**art.to_json(), "path": str(dest) if dest else None})
    if args.json:
        _common.print_json({"variants": rows})
    else:
        for row in rows:
            status = row["path"] if row["error"] is None else f"FAILED: {row['error']}"
            print(f"{row['variant']:9s} {status}")
    return 0 if all(r["error"] is None for r in rows) else _common.EXIT_ERROR
