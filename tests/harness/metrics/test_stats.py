"""Statistics vs independent implementations: fairlearn, scipy, hand-worked Holm; bootstrap checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from harness.metrics import stats as st
from harness.metrics.cells import GroupCells, cells_of_frame
from harness.metrics.compare import per_sample
from harness.metrics.groups import disparity, group_metrics
from harness.records import DeviceRun, Logits
from support.synthetic_runs import make_test_set, variant_logits


def make_frame(sizes=None, spec=None, variant="int8", target="local", delegate="xnnpack", seed=0) -> pd.DataFrame:
    test, z_ref = make_test_set(sizes or {"majority": 400, "minority": 120, "tiny": 30}, data_seed=seed)
    spec = spec if spec is not None else {"majority": (0.9, 0.5), "minority": (0.5, 1.2), "tiny": (0.7, 0.8)}
    z_var = variant_logits(z_ref, test.group, spec, noise_seed=seed + 1)
    run = DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256=None, logits=z_var)
    return per_sample(Logits(ids=test.ids, values=z_ref), run, test)


@pytest.fixture(scope="module")
def frame():
    return make_frame()


@pytest.fixture(scope="module")
def stats(frame):
    return st.compute_stats(frame, n_resamples=500, seed=3)


def group_rows(stats_table: pd.DataFrame) -> pd.DataFrame:
    return stats_table[stats_table["scope"] == "group"].set_index("group")


def test_accuracy_and_drops_agree_with_fairlearn(frame, stats):
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    ref = MetricFrame(metrics=accuracy_score, y_true=frame["label"], y_pred=frame["pred_ref"],
                      sensitive_features=frame["group"])
    var = MetricFrame(metrics=accuracy_score, y_true=frame["label"], y_pred=frame["pred"],
                      sensitive_features=frame["group"])
    rows = group_rows(stats.groups)
    for g in ref.by_group.index:
        assert rows.loc[g, "acc_ref"] == pytest.approx(ref.by_group[g], abs=1e-12)
        assert rows.loc[g, "acc"] == pytest.approx(var.by_group[g], abs=1e-12)
        assert rows.loc[g, "acc_drop"] == pytest.approx(ref.by_group[g] - var.by_group[g], abs=1e-12)
    overall = stats.groups[stats.groups["scope"] == "overall"].iloc[0]
    assert overall["acc_drop"] == pytest.approx(ref.overall - var.overall, abs=1e-12)
    # fairlearn's between-groups difference is the unsigned spread; ours keeps the sign per group
    drops = rows["acc_drop"]
    d = stats.disparity.iloc[0]
    assert d["drop_gap"] == pytest.approx(drops.max() - drops.min(), abs=1e-12)
    assert var.difference(method="between_groups") == pytest.approx(rows["acc"].max() - rows["acc"].min())


def test_wilson_agrees_with_statsmodels_and_scipy(frame, stats):
    from statsmodels.stats.proportion import proportion_confint

    rows = group_rows(stats.groups)
    for g, part in frame.groupby("group"):
        for col, correct in (("acc_ref", "correct_ref"), ("acc", "correct")):
            k, n = int(part[correct].sum()), len(part)
            lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert (rows.loc[g, f"{col}_lo"], rows.loc[g, f"{col}_hi"]) == pytest.approx((lo, hi), abs=1e-12)
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert (rows.loc[g, f"{col}_lo"], rows.loc[g, f"{col}_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    lo, hi = st.wilson_interval(17, 20)
    assert (float(lo), float(hi)) == pytest.approx((0.63958, 0.94763), abs=1e-5)


@pytest.mark.parametrize("b, c", [(8, 25), (0, 6), (1, 8), (10, 23), (3, 3), (12, 0)])
def test_mcnemar_exact_equals_binomtest(b, c):
    assert st.mcnemar_exact(b, c) == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)


def test_mcnemar_known_value_and_no_discordant_pairs():
    assert st.mcnemar_exact(8, 25) == pytest.approx(0.00455, abs=1e-5)
    assert st.mcnemar_exact(0, 5) > 0.05 and st.mcnemar_exact(0, 6) < 0.05  # the detectability rule
    assert st.mcnemar_exact(0, 0) == 1.0


def test_bit_identical_to_statsmodels_which_it_no_longer_imports():
    """The statistics were computed with statsmodels before; the same inputs give the same bits."""
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportion_confint

    n = np.array([1, 2, 7, 30, 100, 180, 539, 719, 4000, 16000])
    for frac in (0.0, 0.013, 0.5, 0.93, 1.0):
        k = np.round(n * frac)
        for confidence in (0.95, 0.9):
            ours = st.wilson_interval(k, n, confidence)
            theirs = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
            assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    for b, c in [(0, 0), (0, 1), (0, 6), (1, 8), (3, 3), (4, 5), (12, 0), (8, 25), (200, 260)]:
        assert st.mcnemar_exact(b, c) == float(mcnemar(np.array([[0, c], [b, 0]]), exact=True).pvalue)
    for p in ([0.01, 0.04, 0.03], [0.5, 0.001], [0.2, 0.2, 0.7, 1e-9], [0.9, 0.6], [0.04]):
        assert np.array_equal(st.holm(p), multipletests(p, method="holm")[1])


def test_mcnemar_and_holm_bit_identical_to_statsmodels_over_a_sweep():
    """Every (b, c) up to 40 discordant pairs each, and random p-value families with ties and ones."""
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.multitest import multipletests

    for b in range(41):
        for c in range(41):
            assert st.mcnemar_exact(b, c) == float(mcnemar(np.array([[0, c], [b, 0]]), exact=True).pvalue), (b, c)
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 5, 12, 40):
        for _ in range(4):
            p = np.round(rng.uniform(0, 1, size) ** 3, 2)   # rounded: ties, zeros and p-values near 1
            assert np.array_equal(st.holm(p), multipletests(p, method="holm")[1]), p


def test_group_counts_and_mcnemar_columns(frame, stats):
    rows = group_rows(stats.groups)
    for g, part in frame.groupby("group"):
        b = int((~part["correct_ref"] & part["correct"]).sum())
        c = int((part["correct_ref"] & ~part["correct"]).sum())
        assert (rows.loc[g, "b"], rows.loc[g, "c"]) == (b, c)
        assert rows.loc[g, "flips"] == int(part["flip"].sum())
        assert rows.loc[g, "mcnemar_p"] == pytest.approx(binomtest(min(b, c), b + c).pvalue if b + c else 1.0)


def test_holm_by_hand(stats):
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    rows = group_rows(stats.groups)
    p = rows["mcnemar_p"].to_numpy()
    order = np.argsort(p)
    expected = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    assert rows["mcnemar_p_holm"].to_numpy()[order] == pytest.approx(expected)


def test_warnings_for_small_groups_and_few_discordant_pairs(stats):
    rows = group_rows(stats.groups)
    assert "n<100" in rows.loc["tiny", "warnings"]
    assert "n<100" not in rows.loc["majority", "warnings"]
    same = st.compute_stats(make_frame(spec={}), n_resamples=50)  # variant == reference: no flips
    assert set(same.groups["warnings"]) >= {"b+c<6", "n<100;b+c<6"}
    assert (same.groups["b"] + same.groups["c"] == 0).all()


def test_bootstrap_is_reproducible_and_seeded(frame):
    a = st.compute_stats(frame, n_resamples=300, seed=11)
    b = st.compute_stats(frame, n_resamples=300, seed=11)
    c = st.compute_stats(frame, n_resamples=300, seed=12)
    pd.testing.assert_frame_equal(a.groups, b.groups)
    pd.testing.assert_frame_equal(a.disparity, b.disparity)
    assert not np.allclose(a.groups["acc_drop_lo"], c.groups["acc_drop_lo"])


def test_a_jobs_intervals_do_not_depend_on_other_jobs(frame):
    other = make_frame(variant="int16x8", spec={"majority": (1.0, 0.2)})
    alone = st.compute_stats(frame, n_resamples=200, seed=0)
    both = st.compute_stats(pd.concat([other, frame], ignore_index=True), n_resamples=200, seed=0)
    mine = both.groups[both.groups["variant"] == "int8"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.groups, mine)


def test_intervals_bracket_the_estimates(stats):
    g = stats.groups
    for col in ("acc_ref", "acc", "acc_drop"):
        assert (g[f"{col}_lo"] <= g[col] + 1e-12).all() and (g[col] <= g[f"{col}_hi"] + 1e-12).all()
    d = stats.disparity.iloc[0]
    for col in ("overall_drop", "worst_group_drop", "psi", "drop_gap"):
        assert d[f"{col}_lo"] <= d[f"{col}_hi"]
    assert d["overall_drop_lo"] <= d["overall_drop"] <= d["overall_drop_hi"]


def test_disparity_point_values_match_groups_module(frame, stats):
    expected = disparity(group_metrics(frame)).iloc[0]
    got = stats.disparity.iloc[0]
    for col in ("worst_group", "psi_group"):
        assert got[col] == expected[col]
    for col in ("overall_drop", "worst_group_drop", "psi", "drop_gap"):
        assert got[col] == pytest.approx(expected[col], abs=1e-12)
    assert got["n_resamples"] == 500 and got["seed"] == 3


def test_multinomial_draws_match_index_resampling():
    """Drawing cell counts is the same bootstrap as resampling items: compare the two intervals."""
    rng = np.random.default_rng(0)
    cells = rng.choice(5, size=250, p=[0.8, 0.1, 0.04, 0.04, 0.02])
    counts = np.bincount(cells, minlength=5)[None, :]
    draws = st.bootstrap_cells(counts, 20000, np.random.default_rng(1))[:, 0, :]
    fast = (draws[:, 1] - draws[:, 2]) / 250
    index = np.random.default_rng(2).integers(0, 250, size=(20000, 250))
    d_item = (cells == 1).astype(float) - (cells == 2)
    slow = d_item[index].mean(axis=1)
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.5, 0.975]), abs=0.006)


@pytest.mark.parametrize("attribute", ["group", "sex"])
def test_intervals_follow_from_the_documented_seed_and_draws(attribute):
    """The module docstring's recipe, written out: the generator seeded with (seed, crc32 of the job's
    names joined by \\x1f, the attribute's name last unless it is "group"), one multinomial draw of
    each group's cells per resample (groups in sorted order), percentile bounds of the resampled
    statistics. The same numbers, bit for bit: the seed's meaning is pinned."""
    import zlib

    counts = np.array([[300, 20, 8, 40, 32], [60, 15, 2, 10, 13], [25, 3, 1, 1, 0]])
    cell = GroupCells(("int8", "pixel7", "gpu"), attribute, ("a", "b", "c"), counts)
    rows = st.cell_stats([cell], n_resamples=400, seed=9, mcnemar=False)
    key = "\x1f".join(cell.job + ((attribute,) if attribute != "group" else ()))
    rng = np.random.default_rng([9, zlib.crc32(key.encode())])
    draws = np.stack([rng.multinomial(row.sum(), row / row.sum(), size=400) for row in counts], axis=1)
    drops = (draws[..., 1] - draws[..., 2]) / counts.sum(axis=1)
    overall = (draws[..., 1] - draws[..., 2]).sum(axis=1) / counts.sum()
    tails = [(1 - 0.95) / 2, 1 - (1 - 0.95) / 2]
    expected = {"worst_group_drop": drops.max(axis=1), "drop_gap": drops.max(axis=1) - drops.min(axis=1),
                "psi": (drops - overall[:, None]).max(axis=1), "overall_drop": overall}
    for name, values in expected.items():
        assert (rows.disparity[0][f"{name}_lo"], rows.disparity[0][f"{name}_hi"]) == \
            tuple(np.quantile(values, tails).tolist()), name
    for g, row in enumerate(rows.groups[1:]):
        assert (row["acc_drop_lo"], row["acc_drop_hi"]) == tuple(np.quantile(drops[:, g], tails).tolist())


def test_bootstrap_interval_covers_the_true_drop():
    """Over 300 simulated test sets the 95 % percentile interval holds the true drop ~95 % of the time."""
    p = np.array([0.78, 0.10, 0.04, 0.05, 0.03])      # true drop = 0.10 - 0.04 = 0.06
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(300):
        counts = rng.multinomial(300, p)[None, :]
        draws = st.bootstrap_cells(counts, 400, rng)[:, 0, :]
        lo, hi = st.percentile_interval((draws[:, 1] - draws[:, 2]) / 300)
        hits += lo <= 0.06 <= hi
    assert 0.90 <= hits / 300 <= 0.99


def test_stratified_bootstrap_means_keeps_groups_and_is_seeded():
    values = np.array([[1.0, 0], [0, 1], [1, 1], [0, 0], [1, 0], [1, 1]])
    groups = np.array(["b", "a", "b", "a", "b", "b"])
    names, sizes, draws = st.stratified_bootstrap_means(values, groups, 4000, np.random.default_rng(0))
    again = st.stratified_bootstrap_means(values, groups, 4000, np.random.default_rng(0))[2]
    assert names.tolist() == ["a", "b"] and sizes.tolist() == [2, 4]
    np.testing.assert_array_equal(draws, again)
    np.testing.assert_allclose(draws.mean(axis=0), [[0.0, 0.5], [1.0, 0.5]], atol=0.02)
    assert set(np.unique(draws[:, 0, 0])) == {0.0}  # group a never sees group b's rows


def test_fixed_columns_whatever_the_input(frame):
    empty = st.compute_stats(frame.iloc[:0], n_resamples=10)
    assert list(empty.groups.columns) == list(st.GROUP_STATS_COLUMNS)
    assert list(empty.disparity.columns) == list(st.DISPARITY_STATS_COLUMNS)
    one = st.compute_stats(frame[frame["group"] == "tiny"], n_resamples=10)
    assert list(one.groups.columns) == list(st.GROUP_STATS_COLUMNS) and len(one.groups) == 2
    assert one.groups["b"].dtype == np.int64 and one.groups["mcnemar_p"].dtype == np.float64


def test_without_mcnemar_only_the_p_values_are_missing(frame):
    """Sign-off asks for no p-value (so scipy is never imported); every other number is the same."""
    cells = cells_of_frame(frame)
    full, light = st.cell_stats(cells, 200, 5), st.cell_stats(cells, 200, 5, mcnemar=False)
    assert repr(light.disparity) == repr(full.disparity)   # repr: NaN equals NaN
    for a, b in zip(light.groups, full.groups, strict=True):
        assert np.isnan(a["mcnemar_p"]) and np.isnan(a["mcnemar_p_holm"]) and not np.isnan(b["mcnemar_p"])
        assert repr({k: v for k, v in a.items() if "mcnemar" not in k}) == \
            repr({k: v for k, v in b.items() if "mcnemar" not in k})


def test_bad_options_are_refused(frame):
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        st.cell_stats(cells_of_frame(frame), seed=-1)
    with pytest.raises(ValueError, match="n_resamples"):
        st.compute_stats(frame, n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        st.compute_stats(frame, confidence=1.5)
