"""A user's table (CSV and Parquet, two group columns) run end to end with `qskew run`."""

import numpy as np
import pandas as pd
import pytest

from harness import cli, rundir

EXPERIMENT = """
[data]
dataset = "{name}"
label = "y"
groups = ["sex", "race"]
intersections = true

[model]
name = "mlp"

[quantize]
variants = ["int8"]
calibration_size = 64

[run]
delegates = ["reference"]
"""


def _table(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"income": rng.normal(size=n), "hours": rng.integers(10, 60, n),
                          "job": rng.choice(["a", "b", "c"], n), "sex": rng.choice(["F", "M"], n),
                          "race": rng.choice(["p", "q", "r"], n, p=[0.7, 0.2, 0.1])})
    frame["y"] = ((frame.income + (frame.job == "a") + rng.normal(scale=0.5, size=n)) > 0.5).astype(int)
    frame["split"] = np.where(np.arange(n) % 3 == 0, "test", "train")
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_with_two_group_columns_runs_end_to_end(tmp_path, suffix):
    data = tmp_path / f"people{suffix}"
    frame = _table()
    frame.to_csv(data, index=False) if suffix == ".csv" else frame.to_parquet(data)
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.format(name=data.name))
    out = tmp_path / "run"
    assert cli.main(["run", str(exp), "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    m = run.metrics[run.metrics.variant == "int8"]
    n = int(m[m.scope == "overall"].n.iloc[0])
    for attribute in ("sex", "race", "sex\u00d7race"):
        assert m[m.attribute == attribute].n.sum() == n
    cells = m[m.scope == "cell"]
    for sex in ("F", "M"):  # the cells of one sex sum to that sex's row
        row = m[(m.attribute == "sex") & (m.group == sex)]
        assert cells[cells.group.str.startswith(sex + "\u00d7")].n.sum() == int(row.n.iloc[0])
    # one cell's accuracy and drop, recomputed from the stored predictions, equal the table's
    cell = cells.sort_values("n").iloc[0]
    p = run.predictions
    ref = p[(p.variant == "reference") & (p.group == cell.group)].set_index("id")
    var = p[(p.variant == "int8") & (p.group == cell.group)].set_index("id").loc[ref.index]
    acc_ref, acc = float((ref.pred == ref.label).mean()), float((var.pred == var.label).mean())
    assert len(var) == cell.n and acc == cell.acc and acc_ref - acc == pytest.approx(cell.acc_drop, abs=1e-15)
