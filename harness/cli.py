"""The ``qskew`` command: wiring only. Each command lives in its own module of ``harness.commands``
(``register(subparsers)`` adds it, a ``cmd_*`` function runs it); this module builds the parser from
them, sets up logging (``harness.logs``) and turns errors into exit codes.

Heavy libraries (TensorFlow, the TFLite runtime, pandas) are imported inside the command functions
so that ``qskew --help`` answers at once. Every ``QskewError`` becomes one line on stderr naming
the file, model or device at fault (control characters escaped: a device's name or message never
reaches the terminal raw), and exit code 2; ``--debug`` shows the traceback instead.
Bare ``qskew`` prints its usage on stderr and exits 2, like any other usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import logs, text
from harness.commands import _common
from harness.commands._common import EXIT_ERROR
from harness.commands.devices import DEPRECATED_ALIAS
from harness.errors import QskewError

# Every command module, in the order `qskew --help` lists them.
COMMAND_MODULES = ("demo", "run", "convert", "inspect", "report", "signoff", "compare", "compare_delegates",
                   "devices", "board", "analyze", "bisect", "suggest_mixed", "mitigate")
EXIT_USAGE = 2  # argparse's code for bad usage; bare `qskew` is one
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells expect from Ctrl-C

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run one ``qskew`` command line; returns the exit code."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "command", None) == DEPRECATED_ALIAS:
        print(f"qskew: '{DEPRECATED_ALIAS}' is deprecated; use 'qskew devices'", file=sys.stderr)
    logs.configure(debug=args.debug, quiet=args.quiet)
    try:
        return _dispatch(args)
    except QskewError as err:
        if args.debug:
            raise
        print(f"qskew: error: {text.escape_controls(err, keep=text.LINE_BREAKS)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("qskew: interrupted; finished jobs are kept in the run directory", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `qskew compare ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        logs.reset()


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; with --json its JSON document alone goes to the real stdout. A command
    that writes a run holds its run directory's lock from before TensorFlow is imported."""
    with _common.run_dir_locked(args):
        if processes_data(args):
            from harness.records.heap import fix_mmap_threshold  # (records imports numpy: not at start-up)

            fix_mmap_threshold()  # large temporaries go back when freed: memory stays flat in the test set's size
        if getattr(args, "heavy", False):
            logs.import_tensorflow_quietly(args.debug)
        if getattr(args, "json", False):
            with _common.json_stdout():
                return args.func(args) or 0
        return args.func(args) or 0


def processes_data(args: argparse.Namespace) -> bool:
    """Whether the command runs models or writes a run (``heavy`` or ``writes_run``): it then gets the
    heap policy of :mod:`harness.records.heap`; commands that only read a run do not need it."""
    return bool(getattr(args, "heavy", False) or getattr(args, "writes_run", None))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole ``qskew`` parser: global flags, then each command module's ``register``; given the
    command line ``argv`` that names a command, only that command's module (importing every
    command's module, with their defaults' imports, costs a short command like ``signoff`` time)."""
    from harness import __version__

    p = argparse.ArgumentParser(prog="qskew", description="Measure how quantization skews a model across groups, "
                                "on the devices it will ship to.")
    p.add_argument("--version", action="version", version=f"qskew {__version__}", help="print the version and exit")
    _add_global_flags(p, default=False)
    sub = p.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for name in _modules_for(argv):
        importlib.import_module(f"harness.commands.{name}").register(sub)
    for command in subparsers(p):
        # default SUPPRESS: a flag given before the command is not reset by the subcommand's default
        _add_global_flags(command, default=argparse.SUPPRESS)
    return p


def _modules_for(argv: list[str] | None) -> tuple[str, ...]:
    """The command module that ``argv``'s command lives in, or every module (no argv, no command,
    or a word that is not a command: the parser then lists them all)."""
    words = [a for a in argv or () if not a.startswith("-")]
    if not words:
        return COMMAND_MODULES
    name = "devices" if words[0] == DEPRECATED_ALIAS else words[0].replace("-", "_")
    return (name,) if name in COMMAND_MODULES else COMMAND_MODULES


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` (commands, subcommands), once each although aliases repeat them."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if all(child is not f for f in found):
                    found += [child] + [c for c in subparsers(child) if all(c is not f for f in found)]
    return found


def _add_global_flags(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help="show tracebacks, debug lines and TensorFlow's logs")
    p.add_argument("--quiet", action="store_true", default=default,
                   help="show only errors on stderr (no progress, no warnings)")


if __name__ == "__main__":
    sys.exit(main())
