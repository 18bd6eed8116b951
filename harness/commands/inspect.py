"""``qskew inspect MODEL.tflite``: inputs, outputs, quantization parameters and op counts of a model."""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew inspect`` to the ``qskew`` subparsers."""
    i = sub.add_parser("inspect", help="inputs, outputs, quantization and op counts of a .tflite model")
    i.add_argument("model", type=Path, help="MODEL.tflite")
    _common.add_json_flag(i)
    i.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
    from harness.quantize.inspect import format_model_info, inspect_model

    info = inspect_model(args.model)
    if args.json:
        _common.print_json(info.to_json())
    else:
        print(format_model_info(info))
    return 0
