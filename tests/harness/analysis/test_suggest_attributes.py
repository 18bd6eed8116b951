"""suggest-mixed's result table on a run with several group attributes (no model needed)."""

from __future__ import annotations

from harness.analysis.suggest import comparison
from harness.metrics.groups import disparity
from harness.rundir import read_run
from support.attribute_runs import make_attribute_run


def test_rows_per_attribute_and_the_worst_group_is_never_a_cell(tmp_path):
    run_dir = make_attribute_run(tmp_path / "run")
    results = comparison(run_dir)
    metrics = read_run(run_dir).metrics
    int8 = results[results["variant"] == "int8"]
    assert len(int8) == 1 + 2 + 2 + 4
    for r in int8.itertuples(index=False):   # excess loss and flips come from the attribute's own row
        m = metrics[(metrics["variant"] == "int8") & (metrics["attribute"] == r.attribute)
                    & (metrics["group"] == r.group)]
        assert len(m) == 1 and m["flip_rate"].iloc[0] == r.flip_rate and m["excess_loss"].iloc[0] == r.excess_loss
    expected = disparity(metrics).set_index("variant")["worst_group"]   # over every attribute's groups
    assert set(int8["worst_group"]) == {expected["int8"]}
    assert expected["int8"] in ("sex=F", "race=B")
