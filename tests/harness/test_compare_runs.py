"""compare_runs: paired intervals on the same test set, no interval (and a reason) otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare_runs import COMPARE_COLUMNS, compare_runs, format_comparison
from harness.rundir import read_run
from support.synthetic_runs import make_run_dir

A_VARIANTS = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "minority": (0.5, 1.3)}}
B_VARIANTS = {"int8": {"majority": (0.9, 0.4), "minority": (0.8, 0.5)}, "int16x8": {"majority": (1.0, 0.1)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return {
        "a": make_run_dir(root / "a", variants=A_VARIANTS, noise_seed=1),
        "b": make_run_dir(root / "b", variants=B_VARIANTS, noise_seed=7),        # same test set
        "other_ids": make_run_dir(root / "c", variants=A_VARIANTS, id_prefix="t"),
        "other_labels": make_run_dir(root / "d", variants=A_VARIANTS, data_seed=9),  # same ids
    }


def rows(table, variant, scope="group"):
    part = table[(table["variant"] == variant) & (table["scope"] == scope)]
    return part.set_index("group") if scope == "group" else part.iloc[0]


def test_same_test_set_is_paired_with_intervals(runs):
    c = compare_runs(runs["a"], runs["b"], n_resamples=1000, seed=0)
    assert c.paired and c.reason.startswith("paired: the same 750 test samples")
    assert list(c.table.columns) == list(COMPARE_COLUMNS)
    int8 = rows(c.table, "int8")
    assert (int8["status"] == "both").all() and int8["paired"].all()
    ma, mb = read_run(runs["a"]).metrics, read_run(runs["b"]).metrics
    for g in ("majority", "minority"):
        a = ma[(ma.variant == "int8") & (ma.group == g)].iloc[0]
        b = mb[(mb.variant == "int8") & (mb.group == g)].iloc[0]
        assert int8.loc[g, "acc_diff"] == pytest.approx(b["acc"] - a["acc"])
        assert int8.loc[g, "drop_diff"] == pytest.approx(b["acc_drop"] - a["acc_drop"])
        assert int8.loc[g, "flip_rate_diff"] == pytest.approx(b["flip_rate"] - a["flip_rate"])
        for prefix in ("acc", "drop", "flip_rate"):
            lo, point, hi = (int8.loc[g, f"{prefix}_diff{end}"] for end in ("_lo", "", "_hi"))
            assert lo <= point <= hi
    # B's gentler int8 hurts the minority less: the whole interval of the drop change is negative
    assert int8.loc["minority", "drop_diff_hi"] < 0


def test_paired_interval_matches_the_paired_normal_approximation(runs):
    """With ~150-600 paired items the bootstrap percentile interval is close to mean +- 1.96 sd/sqrt(n)."""
    c = compare_runs(runs["a"], runs["b"], n_resamples=4000, seed=1)
    fa, fb = read_run(runs["a"]).per_sample("int8", "local", "xnnpack"), read_run(runs["b"]).per_sample(
        "int8", "local", "xnnpack")
    for g in ("majority", "minority"):
        d = fb.loc[fb.group == g, "correct"].to_numpy(float) - fa.loc[fa.group == g, "correct"].to_numpy(float)
        half = 1.96 * d.std() / np.sqrt(d.size)
        row = rows(c.table, "int8").loc[g]
        assert row["acc_diff_lo"] == pytest.approx(d.mean() - half, abs=0.012)
        assert row["acc_diff_hi"] == pytest.approx(d.mean() + half, abs=0.012)


def test_a_run_against_itself_changes_nothing(runs):
    c = compare_runs(runs["a"], runs["a"], n_resamples=200)
    both = c.table[c.table["status"] == "both"]
    for col in ("acc_diff", "acc_diff_lo", "acc_diff_hi", "drop_diff_hi", "flip_rate_diff_lo"):
        assert (both[col] == 0).all()


def test_jobs_in_one_run_only_are_listed(runs):
    c = compare_runs(runs["a"], runs["b"], n_resamples=50)
    assert rows(c.table, "fp32", "overall")["status"] == "only_a"
    assert rows(c.table, "int16x8", "overall")["status"] == "only_b"
    assert np.isnan(rows(c.table, "fp32", "overall")["acc_diff"]) and rows(c.table, "fp32", "overall")["n_b"] == 0
    text = format_comparison(c)
    assert "fp32/local/xnnpack" in text and "only in run A" in text and "only in run B" in text


@pytest.mark.parametrize("other, why", [("other_ids", "ids only in A"), ("other_labels", "another label")])
def test_different_test_sets_are_not_paired(runs, other, why):
    c = compare_runs(runs["a"], runs[other], n_resamples=50)
    assert not c.paired and why in c.reason and "no interval" in c.reason
    both = c.table[c.table["status"] == "both"]
    assert len(both) and not both["paired"].any()
    assert both["acc_diff"].notna().all() and both["acc_diff_lo"].isna().all() and both["drop_diff_hi"].isna().all()


def test_lookalike_jobs_and_groups_are_shown_whole(tmp_path):
    from harness.compare_runs import compare_runs, format_comparison
    from support.run_kit import LOOKALIKE_DEVICES, LOOKALIKE_GROUPS, write_lookalike_run

    a, b = write_lookalike_run(tmp_path / "a"), write_lookalike_run(tmp_path / "b")
    text = format_comparison(compare_runs(a, b, n_resamples=20))
    for name in LOOKALIKE_GROUPS:
        assert f" {name} " in text
    for device in LOOKALIKE_DEVICES:
        assert f"int8/{device}/xnnpack " in text


CELLS = {"F\u00d7A": 300, "F\u00d7B": 120, "M\u00d7A": 400, "M\u00d7B": 130}
CELL_A = {"fp32": {}, "int8": {"F\u00d7A": (0.9, 0.4), "F\u00d7B": (0.4, 1.6), "M\u00d7A": (0.9, 0.4), "M\u00d7B": (0.8, 0.6)}}
CELL_B = {"int8": {"F\u00d7A": (0.9, 0.4), "F\u00d7B": (0.9, 0.3), "M\u00d7A": (0.9, 0.4), "M\u00d7B": (0.8, 0.6)}}


@pytest.fixture(scope="module")
def attribute_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-attributes")
    named = {"sizes": CELLS, "attributes": ("sex", "race"), "intersections": True}
    return {"a": make_run_dir(root / "a", variants=CELL_A, noise_seed=1, **named),
            "b": make_run_dir(root / "b", variants=CELL_B, noise_seed=7, **named),
            "plain": make_run_dir(root / "plain", sizes=CELLS, variants=CELL_A)}


def test_every_attribute_and_cell_gets_its_paired_interval(attribute_runs):
    c = compare_runs(attribute_runs["a"], attribute_runs["b"], n_resamples=4000, seed=1)
    assert c.paired
    int8 = c.table[(c.table["variant"] == "int8") & (c.table["scope"] != "overall")]
    keys = sorted(zip(int8["attribute"], int8["group"]))
    assert keys == sorted([("sex", "F"), ("sex", "M"), ("race", "A"), ("race", "B")]
                          + [("sex\u00d7race", cell) for cell in CELLS])
    for prefix in ("acc", "drop", "flip_rate"):
        lo, point, hi = (int8[f"{prefix}_diff{end}"].to_numpy() for end in ("_lo", "", "_hi"))
        assert np.isfinite(lo).all() and np.isfinite(hi).all()
        assert (lo <= point + 1e-12).all() and (point <= hi + 1e-12).all()
    # sex=F pools two cells: its interval is the one of F's 420 paired samples (normal approximation)
    fa = read_run(attribute_runs["a"]).per_sample("int8", "local", "xnnpack")
    fb = read_run(attribute_runs["b"]).per_sample("int8", "local", "xnnpack")
    female = fa["group"].str.startswith("F").to_numpy()
    d = fb["correct"].to_numpy(float)[female] - fa["correct"].to_numpy(float)[female]
    half = 1.96 * d.std() / np.sqrt(d.size)
    row = int8[(int8["attribute"] == "sex") & (int8["group"] == "F")].iloc[0]
    assert d.size == 420 and row["acc_diff"] == pytest.approx(d.mean())
    assert row["acc_diff_lo"] == pytest.approx(d.mean() - half, abs=0.012)
    assert row["acc_diff_hi"] == pytest.approx(d.mean() + half, abs=0.012)
    # B's int8 spares the F\u00d7B cell: the whole interval of the cell's drop change is negative
    cell = int8[(int8["attribute"] == "sex\u00d7race") & (int8["group"] == "F\u00d7B")].iloc[0]
    assert cell["drop_diff_hi"] < 0
    text = format_comparison(c)
    assert "sex=F " in text and "sex\u00d7race=F\u00d7B" in text


def test_runs_that_split_groups_differently_are_not_paired(attribute_runs):
    c = compare_runs(attribute_runs["a"], attribute_runs["plain"], n_resamples=50)
    assert not c.paired and "split their groups differently" in c.reason
    assert c.table[["acc_diff_lo", "acc_diff_hi"]].isna().all().all()
