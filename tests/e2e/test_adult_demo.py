"""`qskew demo --dataset adult --model mlp`: tables per sex, race and sex x race, and its sign-off.

The README states the verdict under the default policy: WARN (the int8 variant's drops on the
attribute-level groups stay within the limits; the small sex x race cells are flagged and warn).
"""

import json

import pytest

from harness import cli, rundir

pytestmark = pytest.mark.slow

README_VERDICT = "WARN"


@pytest.fixture(scope="module")
def adult_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adult") / "run"
    assert cli.main(["demo", "--dataset", "adult", "--model", "mlp", "--out", str(out), "--no-progress"]) == 0
    return out


def test_the_demo_prints_every_attribute_and_flags_the_small_cells(adult_run, capsys):
    run = rundir.read_run(adult_run)
    int8 = run.metrics[run.metrics.variant == "int8"]
    assert set(int8.attribute) == {"", "sex", "race", "sex\u00d7race"}
    cells = int8[int8.scope == "cell"]
    assert len(cells) == 10 and set(cells[cells.small_group].group) == {
        "Female\u00d7Other", "Female\u00d7Amer-Indian-Eskimo", "Male\u00d7Other", "Male\u00d7Amer-Indian-Eskimo"}
    fp32 = run.metrics[(run.metrics.variant == "fp32") & (run.metrics.scope == "overall")]
    assert 0.83 <= float(fp32.acc_ref.iloc[0]) <= 0.88  # an MLP on Adult: about 85 %


def test_signoff_under_the_default_policy_gives_the_readme_verdict(adult_run, capsys):
    code = cli.main(["signoff", str(adult_run), "--resamples", "400"])
    verdict = json.loads((adult_run / "signoff.json").read_text())
    assert verdict["verdict"] == README_VERDICT and code == 0
    size = next(r for r in verdict["rules"] if r["rule"] == "min_group_size")
    assert size["status"] == "WARN" and "sex\u00d7race=Female\u00d7Other (n=46)" in size["message"]
    statuses = {(e["attribute"], e["status"]) for r in verdict["rules"] for e in r["evidence"] if "attribute" in e}
    assert not {s for a, s in statuses if a in ("sex", "race")} & {"FAIL"}
