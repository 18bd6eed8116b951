"""What the command modules share: common flags, progress and echo, JSON output, model source, devices.

Everything heavy (TensorFlow, pandas, the TFLite runtime) is imported inside the functions, so that
building the parser for ``qskew --help`` stays instant.

Output discipline: a command's result goes to stdout (tables, or with ``--json`` one JSON document
and nothing else); progress lines, warnings and errors go to stderr. With ``--json`` the CLI points
fd 1 at stderr while the command runs (:func:`json_stdout`), so even what native code prints cannot
land in the document; :func:`print_json` writes to the real stdout saved before that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

EXIT_ERROR = 2  # a QskewError: bad input, failed device, ... (argparse also uses 2 for bad usage)
JSON_HELP = "print one JSON document on stdout instead of tables (everything else goes to stderr)"

_json_out = None  # the real stdout while a --json command runs (see json_stdout)


def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [s.strip() for s in text.split(",") if s.strip()]


def add_json_flag(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """``--json``: the same flag and destination (``args.json``) on every command that has it."""
    p.add_argument("--json", dest="json", action="store_true", help=help)


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of every command that evaluates variants on devices (demo, run, mitigate, ...)."""
    p.add_argument("--device", action="append", default=None, metavar="NAME|KEY=VALUE",
                   help="run on these inventory devices (repeatable; overrides [run] targets): "
                        "'local', 'simulated' (a simulated ADB device started for the run), a name or "
                        "a label from --devices")
    p.add_argument("--devices", type=Path, default=None,
                   help="device inventory (default: [run] devices_file, $QSKEW_DEVICES, ./devices.toml)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default runs/<name>-<time>); an existing one is resumed")
    add_json_flag(p, "print the summary as JSON instead of tables (everything else goes to stderr)")
    add_progress_flag(p)


def add_stats_flags(p: argparse.ArgumentParser) -> None:
    """Bootstrap options of the commands that compute intervals (report, signoff, compare)."""
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed (default 0)")


def stats_options(args) -> dict:
    """``n_resamples`` and ``seed`` keyword arguments from :func:`add_stats_flags`' flags."""
    from harness.errors import ConfigError
    from harness.metrics.stats import N_RESAMPLES, SEED

    n = N_RESAMPLES if args.resamples is None else args.resamples
    if n < 1:
        raise ConfigError(f"--resamples must be >= 1, got {n}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    return {"n_resamples": n, "seed": SEED if args.seed is None else args.seed}


def progress(args) -> bool:
    """Progress bars only for a person at a terminal: not with --no-progress, --json or --quiet."""
    off = getattr(args, "no_progress", False) or getattr(args, "json", False) or getattr(args, "quiet", False)
    return not off and sys.stderr.isatty()


def echo(args) -> Callable[[str], None]:
    """A function printing progress lines to stderr; silent with --json or --quiet."""
    if getattr(args, "json", False) or getattr(args, "quiet", False):
        return lambda s: None
    return lambda s: print(s, file=sys.stderr, flush=True)


def print_json(obj) -> None:
    """``obj`` as one strict JSON document on the real stdout (see :func:`json_stdout`)."""
    from harness.fsutil import dumps_json

    out = _json_out or sys.stdout
    out.write(dumps_json(obj))
    out.flush()


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """While a --json command runs: fd 1 and ``sys.stdout`` point at stderr, :func:`print_json` at
    the real stdout (Python's prints and native code's writes to fd 1 both end on stderr)."""
    from harness.logs import redirect_fd

    global _json_out
    try:
        with os.fdopen(os.dup(1), "w") as _json_out, redirect_fd(1, 2), \
                contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_out = None


def default_run_dir(name: str, suffix: str = "") -> Path:
    """``runs/<name><suffix>-<YYYYmmdd-HHMMSS>``, where --out is not given."""
    return Path("runs") / f"{name}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextlib.contextmanager
def run_dir_locked(args) -> Iterator[None]:
    """For a command that writes a run (``set_defaults(writes_run=resolver)``): resolve its run
    directory into ``args.out`` and hold that folder's lock (``harness.rundir.lock``) while the
    command runs. The CLI enters this before importing TensorFlow, so a second writer of the same
    folder fails at once, before any slow work."""
    resolve = getattr(args, "writes_run", None)
    if resolve is None:
        yield
        return
    from harness.rundir.lock import locked

    args.out = Path(resolve(args))
    with locked(args.out):
        yield


def with_devices(exp, args):
    """The experiment with --device / --devices from the command line applied, validated again."""
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


def model_source(exp, dataset, show_progress: bool, say: Callable[[str], None]):
    """The experiment's FP32 model: its file, or the built-in one trained (or found in the cache).

    Nothing is loaded here when the model is already on disk: the ModelSource loads it (importing
    TensorFlow) only if a conversion, the reference or training needs it.
    """
    from harness import logs, modelio
    from harness.model_source import ModelSource

    if exp.model.path:
        path = Path(exp.model.path).expanduser()
        if path.suffix.lower() == modelio.TFLITE_SUFFIX:
            return ModelSource.from_tflite(path)
        return ModelSource(None, {"source": "file", "path": str(exp.model.path)},
                           load=lambda: logs.with_tensorflow(modelio.load_model, path), file=path)
    import models
    from models.train import cached_model_path, train_or_load

    models.get(exp.model.name)  # fails helpfully on an unknown name before any work
    say(f"model: {exp.model.name} (seed {exp.model.seed})")
    desc = {"source": "builtin", "name": exp.model.name, "seed": exp.model.seed}
    cached = cached_model_path(exp.model.name, dataset, seed=exp.model.seed)
    if cached is not None:
        say(f"  found in the cache: {cached}")
        return ModelSource(None, {**desc, "cache_key": cached.stem, "path": str(cached)}, file=cached,
                           load=lambda: logs.with_tensorflow(
                               lambda: train_or_load(exp.model.name, dataset, seed=exp.model.seed).model))
    trained = logs.with_tensorflow(train_or_load, exp.model.name, dataset, seed=exp.model.seed,
                                   progress=show_progress)
    say(f"  {'loaded from cache' if trained.from_cache else f'trained in {trained.train_s:.1f} s'}: {trained.path}")
    return ModelSource(trained.model, {**desc, "cache_key": trained.cache_key, "path": str(trained.path),
                                       "sha256": modelio.model_sha256(trained.model)}, file=trained.path)


def run_experiment(exp, args) -> int:
    """Evaluate ``exp`` into --out (or a new run directory) and print its tables or JSON summary.

    When a device fails, the jobs that finished are still printed, with the run directory, before
    the error; a run in which every job failed is an error too (exit 2), after its summary."""
    from harness import datasets
    from harness.errors import QskewError, ResultsError
    from harness.evaluate import evaluate

    exp = with_devices(exp, args)
    show_progress, say = progress(args), echo(args)
    out = args.out or default_run_dir(exp.name)
    say(f"dataset: {exp.data.dataset}")
    dataset = datasets.load(exp.data.dataset, exp.data.table_options())
    source = model_source(exp, dataset, show_progress, say)
    try:
        evaluate(exp, dataset, source, out, progress=show_progress, echo=say)
    except QskewError:
        show_run(out, args)  # what finished before the failure, then the error
        raise
    run = show_run(out, args)
    if run is not None and run.summary["runs"] and not run.jobs("ok"):
        raise ResultsError(f"every job failed ({len(run.summary['runs'])}); see the summary above and {out}")
    return 0


def show_run(out: Path, args):
    """Print the run's tables (or its JSON summary) and its path; the RunData, or None when no
    run was written there (e.g. every device was unreachable)."""
    from harness import rundir
    from harness.errors import ResultsError
    from harness.report.text import format_summary, format_table
    from harness.text import escape_controls

    try:
        run = rundir.read_run(out)
    except ResultsError:
        return None
    if args.json:
        print_json({"run_dir": str(out), "summary": run.summary})
    else:
        print()
        print(format_table(run.metrics))
        print()
        print(format_summary(run.summary))
        for note in run.manifest.get("notes") or ():
            print(f"note: {escape_controls(note)}")
        print(f"\nrun directory: {out}")
    return run


def print_group_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command group run without a subcommand: its help on stderr, exit 2."""
    def show(args) -> int:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return show
