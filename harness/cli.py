"""The ``qskew`` command: parse -> load config -> one library call -> render.

Heavy libraries (TensorFlow, the TFLite runtime, pandas) are imported inside the command functions
so that ``qskew --help`` answers at once. Every ``QskewError`` becomes one line on stderr naming
the file, model or device at fault, and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from pathlib import Path

from harness.errors import QskewError

# Commands that live in their own module: each has ``register(subparsers)`` and imports nothing
# heavy at module level (``qskew --help`` stays instant).
COMMAND_MODULES = ("harness.commands.device", "harness.commands.devices", "harness.commands.analysis", "harness.commands.mitigate",
                   "harness.commands.compare_delegates", "harness.commands.board")
EXIT_ERROR = 2  # a QskewError: bad input, failed device, ... (argparse also uses 2 for bad usage)
_json_out = None  # the real stdout while a --json command runs (see main)


def _print_json(obj) -> None:
    out = _json_out or sys.stdout
    out.write(json.dumps(obj, indent=2, default=str) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _quiet_tensorflow(args.debug)
    try:
        if getattr(args, "heavy", False):
            _import_tensorflow_quietly(args.debug)
        if getattr(args, "json", False):
            # Machine-readable output owns stdout: anything native code prints goes to stderr,
            # and the JSON document is written to a duplicate of the real stdout.
            global _json_out
            try:
                with os.fdopen(os.dup(1), "w") as _json_out, _fd_redirect(1, 2):
                    return args.func(args) or 0
            finally:
                _json_out = None
        return args.func(args) or 0
    except QskewError as err:
        if args.debug:
            raise
        print(f"qskew: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("qskew: interrupted; finished jobs are kept in the run directory", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `qskew compare ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    from harness import __version__

    p = argparse.ArgumentParser(prog="qskew", description="Measure how quantization skews a model across groups, "
                                "on the devices it will ship to.")
    p.add_argument("--version", action="version", version=f"qskew {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow logs")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    d = sub.add_parser("demo", help="built-in dataset and model, all variants, local target")
    d.add_argument("--model", default="small_cnn", help="built-in model: small_cnn (default), mobilenet_v2")
    d.add_argument("--variants", default=None, help="comma-separated subset (default: all six)")
    d.add_argument("--delegates", default="xnnpack", help="comma-separated delegates (default: xnnpack)")
    _common_run_flags(d)
    d.set_defaults(func=cmd_demo, heavy=True)

    r = sub.add_parser("run", help="run an experiment file")
    r.add_argument("experiment", type=Path, help="EXPERIMENT.toml")
    _common_run_flags(r)
    r.set_defaults(func=cmd_run, heavy=True)

    c = sub.add_parser("convert", help="write the TFLite variants of a model")
    c.add_argument("--model", default="small_cnn", help="built-in model name, or a .keras file / SavedModel folder")
    c.add_argument("--dataset", default="digits-groups", help="dataset for training/calibration (default digits-groups)")
    c.add_argument("--variants", default=None, help="comma-separated (default: all six)")
    c.add_argument("--calibration-size", type=int, default=256)
    c.add_argument("--calibration-strategy", default="random", help="random, proportional or balanced")
    c.add_argument("--out", type=Path, default=Path("variants"), help="folder for the .tflite files")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_convert, heavy=True)

    i = sub.add_parser("inspect", help="inputs, outputs, quantization and op counts of a .tflite model")
    i.add_argument("model", type=Path)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_inspect)
    _add_run_dir_commands(sub)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


def _common_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", action="append", default=None, metavar="NAME|KEY=VALUE",
                   help="run on these inventory devices (repeatable; overrides [run] targets): "
                        "'local', 'simulated' (a simulated ADB device started for the run), a name or "
                        "a label from --devices")
    p.add_argument("--devices", type=Path, default=None,
                   help="device inventory (default: [run] devices_file, $QSKEW_DEVICES, ./devices.toml)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default runs/<name>-<time>); an existing one is resumed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_demo(args) -> int:
    from harness import config

    raw = {"experiment": {"name": f"demo-{args.model}"}, "model": {"name": args.model},
           "run": {"delegates": _csv(args.delegates)}}
    if args.variants:
        raw["quantize"] = {"variants": _csv(args.variants)}
    return _run_experiment(config.from_dict(raw, source="qskew demo"), args)


def cmd_run(args) -> int:
    from harness import config

    return _run_experiment(config.load(args.experiment), args)


def _with_devices(exp, args):
    """The experiment with --device / --devices from the command line applied."""
    import dataclasses

    from harness import config

    run = exp.run
    if args.device:
        run = dataclasses.replace(run, targets=tuple(args.device))
    if args.devices:
        run = dataclasses.replace(run, devices_file=str(args.devices.resolve()))
    exp = dataclasses.replace(exp, run=run)
    config.validate(exp)
    return exp


def _run_experiment(exp, args) -> int:
    from harness import datasets, results
    from harness.evaluate import evaluate

    exp = _with_devices(exp, args)
    progress = _progress(args)
    echo = _echo(args)
    out = args.out or Path("runs") / f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    echo(f"dataset: {exp.data.dataset}")
    dataset = datasets.load(exp.data.dataset)
    source = _model_source(exp, dataset, progress, echo)
    evaluate(exp, dataset, source, out, progress=progress, echo=echo)
    from harness.report.text import format_summary, format_table

    run = results.read_run(out)
    if args.json:
        _print_json({"run_dir": str(out), "summary": run.summary})
    else:
        print()
        print(format_table(run.metrics))
        print()
        print(format_summary(run.summary))
        print(f"\nrun directory: {out}")
    return 0


def _model_source(exp, dataset, progress: bool, echo):
    from harness import modelio
    from harness.evaluate import ModelSource

    if exp.model.path:
        model = modelio.load_model(exp.model.path)
        return ModelSource(model, {"source": "file", "path": str(exp.model.path),
                                   "sha256": modelio.model_sha256(model)})
    import models
    from models.train import train_or_load

    models.get(exp.model.name)  # fails helpfully on an unknown name before any work
    echo(f"model: {exp.model.name} (seed {exp.model.seed})")
    trained = train_or_load(exp.model.name, dataset, seed=exp.model.seed, progress=progress)
    echo(f"  {'loaded from cache' if trained.from_cache else f'trained in {trained.train_s:.1f} s'}: {trained.path}")
    return ModelSource(trained.model, {"source": "builtin", "name": exp.model.name, "seed": exp.model.seed,
                                       "cache_key": trained.cache_key, "path": str(trained.path),
                                       "sha256": modelio.model_sha256(trained.model)})


def cmd_convert(args) -> int:
    from harness import config, datasets
    from harness.evaluate import build_variants

    variants = _csv(args.variants) if args.variants else list(config.ALL_VARIANTS)
    model_is_path = Path(args.model).exists()
    exp = config.from_dict({"model": {"path": args.model} if model_is_path else {"name": args.model},
                            "data": {"dataset": args.dataset},
                            "quantize": {"variants": variants, "calibration_size": args.calibration_size,
                                         "calibration_strategy": args.calibration_strategy}},
                           source="qskew convert")
    progress, echo = _progress(args), _echo(args)
    dataset = datasets.load(exp.data.dataset)
    source = _model_source(exp, dataset, progress, echo)
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
        _print_json({"variants": rows})
    else:
        for row in rows:
            status = row["path"] if row["error"] is None else f"FAILED: {row['error']}"
            print(f"{row['variant']:9s} {status}")
    return 0 if all(r["error"] is None for r in rows) else EXIT_ERROR


def cmd_inspect(args) -> int:
    from harness.quantize.inspect import format_model_info, inspect_model

    info = inspect_model(args.model)
    if args.json:
        _print_json(info.to_json())
    else:
        print(format_model_info(info))
    return 0


# -- commands that read a run directory: report, signoff, compare (harness.report, signoff, compare_runs)

def _add_run_dir_commands(sub) -> None:
    rp = sub.add_parser("report", help="one self-contained HTML report of a run directory",
                        description="Write one HTML file (charts embedded, opens from an email) and the "
                                    "charts as PNG files next to it.")
    rp.add_argument("run_dir", type=Path, help="RUN_DIR")
    rp.add_argument("--out", type=Path, default=None,
                    help="HTML file (default RUN_DIR/report/report.html); PNGs go next to it")
    _stats_flags(rp)
    rp.set_defaults(func=cmd_report)

    so = sub.add_parser("signoff", help="judge a run against a policy: PASS, WARN or FAIL",
                        description="Judge RUN_DIR against a policy; write RUN_DIR/signoff.json and JUnit XML.",
                        epilog="exit codes: 0 PASS; 0 WARN, with a line starting 'WARNING:' on stderr; "
                               "1 FAIL; 2 the run or the policy could not be read. WARN: a limit holds on the "
                               "point estimate but not on its 95 % interval, a flip-rate ratio rests on < 6 flips, "
                               "an applied delegate is unknown, or some job failed.")
    so.add_argument("run_dir", type=Path, help="RUN_DIR")
    so.add_argument("--policy", type=Path, default=None,
                    help="POLICY.toml (default: the policy shipped in harness/policies/default.toml)")
    so.add_argument("--junit", type=Path, default=None, help="JUnit XML file (default RUN_DIR/signoff-junit.xml)")
    so.add_argument("--json", dest="as_json", action="store_true", help="print the verdict as JSON")
    _stats_flags(so)
    so.set_defaults(func=cmd_signoff)

    cp = sub.add_parser("compare", help="what changed between two run directories, per job and group")
    cp.add_argument("run_a", type=Path, help="RUN_A (before)")
    cp.add_argument("run_b", type=Path, help="RUN_B (after)")
    cp.add_argument("--json", dest="as_json", action="store_true", help="print the table as JSON records")
    _stats_flags(cp)
    cp.set_defaults(func=cmd_compare)


def _stats_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default 0)")


def _stats_options(args) -> dict:
    from harness.errors import ConfigError
    from harness.metrics.stats import N_RESAMPLES, SEED

    n = N_RESAMPLES if args.resamples is None else args.resamples
    if n < 1:
        raise ConfigError(f"--resamples must be >= 1, got {n}")
    return {"n_resamples": n, "seed": SEED if args.seed is None else args.seed}


def cmd_report(args) -> int:
    from harness.report.render import write_report

    files = write_report(args.run_dir, args.out, **_stats_options(args))
    print(f"report: {files.html}")
    for png in files.pngs:
        print(f"chart:  {png}")
    return 0


def cmd_signoff(args) -> int:
    from harness import results, signoff

    policy = signoff.load_policy(args.policy)
    verdict = signoff.signoff(args.run_dir, policy, **_stats_options(args))
    results.write_signoff(args.run_dir, verdict.to_json())
    junit = signoff.write_junit(verdict, args.junit or results.signoff_junit_path(args.run_dir))
    if args.as_json:
        _print_json(results.read_signoff(args.run_dir))
    else:
        print(signoff.format_verdict(verdict))
        print(f"written: {args.run_dir / results.SIGNOFF_FILE}, {junit}")
    if verdict.verdict == signoff.WARN:
        reasons = "; ".join(f"{r.rule}: {r.message}" for r in verdict.rules if r.status == signoff.WARN)
        print(f"WARNING: sign-off verdict is WARN ({reasons})", file=sys.stderr)
        return signoff.EXIT_WARN
    return signoff.EXIT_FAIL if verdict.verdict == signoff.FAIL else signoff.EXIT_PASS


def cmd_compare(args) -> int:
    from harness.compare_runs import compare_runs, format_comparison

    comparison = compare_runs(args.run_a, args.run_b, **_stats_options(args))
    if args.as_json:
        table = comparison.table.astype(object).where(comparison.table.notna(), None)
        _print_json({"run_a": comparison.run_a, "run_b": comparison.run_b, "paired": comparison.paired,
                     "reason": comparison.reason, "rows": table.to_dict(orient="records")})
    else:
        print(format_comparison(comparison))
    return 0


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _progress(args) -> bool:
    return not (args.no_progress or args.json) and sys.stderr.isatty()


def _echo(args):
    if args.json:
        return lambda s: None
    return lambda s: print(s, file=sys.stderr, flush=True)


def _quiet_tensorflow(debug: bool) -> None:
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _fd_redirect(fd: int, to_fd: int | None):
    """Point file descriptor ``fd`` at ``to_fd`` (None: /dev/null) for a while, at the OS level.

    TensorFlow's C++ start-up lines and the converter's ``fully_quantize: ...`` line are written
    straight to fds 2 and 1, past Python's sys.stdout/sys.stderr, so only this silences them.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(fd)
    target = os.open(os.devnull, os.O_WRONLY) if to_fd is None else to_fd
    try:
        os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        if to_fd is None:
            os.close(target)


def _import_tensorflow_quietly(debug: bool) -> None:
    """Import TensorFlow once with fd 2 silenced (it ignores TF_CPP_MIN_LOG_LEVEL for these lines)."""
    if debug or "tensorflow" in sys.modules:
        return
    with _fd_redirect(2, None):
        import tensorflow  # noqa: F401


if __name__ == "__main__":
    sys.exit(main())
