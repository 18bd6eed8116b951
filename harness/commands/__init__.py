"""The ``qskew`` commands, one module each (``register(subparsers)`` plus the command function).

Shared flags and helpers live in ``harness.commands._common``; ``harness.cli`` only wires the
modules together and never the other way round: no command module imports ``harness.cli``.
"""
