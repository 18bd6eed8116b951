"""``qskew run EXPERIMENT.toml``: the experiment file's model, variants and devices, into a run directory.

    qskew run examples/experiment.toml --device pixel7 --out runs/pixel7
    qskew run examples/experiment.toml --executor ray --address auto   # devices on a Ray cluster
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
    r.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where jobs run (overrides [run] executor): 'local' (this host, the default) or "
                        "'ray' (one actor per device on the Ray node that reaches it; needs qskew[ray])")
    r.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                   help="the Ray cluster for --executor ray (overrides [run] address; default auto)")
    r.set_defaults(func=cmd_run, writes_run=run_dir)  # TensorFlow only on a cache miss


def run_dir(args) -> Path:
    """The run directory ``qskew run`` writes (its lock is taken before anything slow)."""
    from harness import config

    return args.out or _common.default_run_dir(config.load(args.experiment).name)


def cmd_run(args) -> int:
    from harness import config

    return _common.run_experiment(with_executor(config.load(args.experiment), args), args)


def with_executor(exp, args):
    """The experiment with --executor / --address applied; with executor ``ray`` Ray must be
    installed and the cluster's address answer (checked now, before any slow work)."""
    import dataclasses

    from harness import config

    run = exp.run
    if args.executor:
        run = dataclasses.replace(run, executor=args.executor)
    if args.address:
        run = dataclasses.replace(run, address=args.address)
    exp = dataclasses.replace(exp, run=run)
    config.validate(exp)
    if run.executor == "ray":
        from harness.farm.ray_executor import answers, require_ray

        require_ray()
        answers(run.address)
    return exp
