"""The ``qskew`` wiring: every command and option has help, global flags go before or after the
command, bare ``qskew`` is a usage error, and start-up imports nothing heavy."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli

COMMANDS_DIR = Path(cli.__file__).parent / "commands"


def _all_parsers():
    root = cli.build_parser()
    return [root] + cli.subparsers(root)


def test_every_command_and_option_has_a_help_line():
    parsers = _all_parsers()
    assert len(parsers) >= len(cli.COMMAND_MODULES) + 2  # plus devices check / simulate
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest for a in action._choices_actions}
                assert listed == {n for n, p in action.choices.items() if n != "device"}, parser.prog
                for choice in action._choices_actions:
                    assert choice.help and choice.help.strip(), f"{parser.prog} {choice.dest}: no help"
            else:
                assert action.help and action.help != argparse.SUPPRESS and action.help.strip(), \
                    f"{parser.prog} {'/'.join(action.option_strings) or action.dest}: no help"


def test_every_command_module_is_wired():
    modules = {p.stem for p in COMMANDS_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(cli.COMMAND_MODULES)


def test_no_command_module_imports_the_cli():
    for path in COMMANDS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            imported = names + ([f"{node.module}.{a.name}" for a in node.names]
                                if isinstance(node, ast.ImportFrom) else [])
            assert "harness.cli" not in imported, f"{path.name} imports harness.cli"


def test_bare_qskew_prints_usage_on_stderr_and_exits_2(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: qskew") and "devices" in err


@pytest.mark.parametrize("argv", [["--debug", "--quiet", "inspect", "m.tflite"],
                                  ["inspect", "m.tflite", "--debug", "--quiet"],
                                  ["--debug", "inspect", "m.tflite", "--quiet"]])
def test_debug_and_quiet_go_before_or_after_the_command(argv):
    args = cli.build_parser().parse_args(argv)
    assert args.debug is True and args.quiet is True


def test_global_flags_default_off_and_survive_the_subcommand():
    parser = cli.build_parser()
    args = parser.parse_args(["devices", "check"])
    assert args.debug is False and args.quiet is False
    assert parser.parse_args(["--debug", "devices", "check"]).debug is True  # not reset by the subparser


def test_json_has_one_destination_on_every_command():
    for parser in _all_parsers():
        for action in parser._actions:
            if "--json" in action.option_strings:
                assert action.dest == "json", parser.prog


def test_start_up_imports_no_heavy_library():
    probe = ("import sys, io, contextlib, harness.cli as c\n"
             "p = c.build_parser()\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    for argv in (['--help'], ['demo', '--help'], ['devices', 'simulate', '--help']):\n"
             "        try:\n            p.parse_args(argv)\n        except SystemExit: pass\n"
             "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'ai_edge_litert', 'sklearn') if m in sys.modules]\n"
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"heavy modules imported at start-up: {out}"


def test_importing_the_cli_and_a_commands_help_imports_no_numpy():
    """The CLI's start and a command's parser pay for numpy only where the command needs it (the heap
    policy of records/heap.py is set by the commands that process data, not at import)."""
    probe = ("import sys, io, contextlib, harness.cli as c\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    for argv in (['signoff', '--help'], ['run', '--help'], ['devices', '--help']):\n"
             "        try:\n            c.build_parser(argv).parse_args(argv)\n        except SystemExit: pass\n"
             "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_commands_that_run_models_or_write_runs_get_the_heap_policy_and_readers_do_not():
    for argv, expected in ((["run", "exp.toml"], True), (["demo"], True), (["convert"], True),
                           (["signoff", "RUN"], False), (["report", "RUN"], False)):
        assert cli.processes_data(cli.build_parser(argv).parse_args(argv)) is expected, argv


def test_an_error_line_escapes_control_characters(capsys, tmp_path):
    inventory = tmp_path / "dev\x1b[2J\x1b]0;owned\x07.toml"
    assert cli.main(["devices", "check", "--devices", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "dev\\x1b[2J\\x1b]0;owned\\x07.toml does not exist" in err and "\x1b" not in err and "\x07" not in err


def test_a_named_command_builds_only_its_own_parser():
    from harness.commands.devices import DEPRECATED_ALIAS

    assert cli._modules_for(["--debug", "signoff", "runs/x"]) == ("signoff",)
    assert cli._modules_for(["compare-delegates", "--delegates", "a"]) == ("compare_delegates",)
    assert cli._modules_for([DEPRECATED_ALIAS, "list"]) == ("devices",)
    assert cli._modules_for([]) == cli._modules_for(["nosuch"]) == cli._modules_for(None) == cli.COMMAND_MODULES
    assert cli._modules_for(["--help"]) == cli.COMMAND_MODULES
