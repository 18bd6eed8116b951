"""``qskew run EXPERIMENT.toml``: the experiment file's model, variants and devices, into a run directory.

    qskew run examples/experiment.toml --device pixel7 --out runs/pixel7
"""

from __future__ import annotations

from pathlib import Path

from harness.commands import _common


def register(sub) -> None:
    """Add ``qskew run`` to the ``qskew`` subparsers."""
    r = sub.add_parser("run", help="run an experiment file",
                       description="Evaluate the variants an experiment file names on its devices; an "
                                   "existing run directory is resumed (finished jobs are kept).")
    r.add_argument("experiment", type=Path, help="EXPERIMENT.toml")
    _common.add_run_flags(r)
    r.set_defaults(func=cmd_run, writes_run=run_dir)  # TensorFlow only on a cache miss


def run_dir(args) -> Path:
    """The run directory ``qskew run`` writes (its lock is taken before anything slow)."""
    from harness import config

    return args.out or _common.default_run_dir(config.load(args.experiment).name)


def cmd_run(args) -> int:
    from harness import config

    return _common.run_experiment(config.load(args.experiment), args)
