"""``qskew signoff`` on a real demo run: the light path (JSON + CSV) judges it exactly as the full
pandas path (``read_run``, statistics from the predictions recomputed from the logits) does."""

from harness import signoff as so
from harness.metrics.stats import run_stats
from harness.rundir import read_run
from harness.rundir.light import read_light


def test_the_demo_runs_light_verdict_is_the_full_paths(demo_run):
    light_run = read_light(demo_run)
    assert light_run is not None
    policy = so.load_policy(None)
    light = so.signoff(demo_run, policy, n_resamples=500, seed=2)
    run = read_run(demo_run)
    full = so.judge(run, run_stats(run, n_resamples=500, seed=2), policy)
    assert light.to_json() == full.to_json()    # the same cells: the same numbers, bit for bit
    assert len(light_run.cells) == len(run.jobs()) == 6
