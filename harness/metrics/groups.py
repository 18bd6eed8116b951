"""Per-group aggregation of the per-sample frame, and the disparity summary of each job.

In fairlearn's words, :func:`group_metrics` computes the ``overall`` value and the values
``by_group`` of every metric, for every job (variant x target x delegate) in the frame, and
:func:`disparity` reduces them to ``group_min`` / ``group_max`` and ``difference(
method="between_groups")`` style gaps. Unlike fairlearn's ``difference()``, drops keep their sign:
``acc_drop = acc_ref - acc`` is positive when the variant is worse than the FP32 reference.

Both functions return a DataFrame with the same columns in the same order whatever the input
(zero rows, one group, many groups): STYLE.md rule 8. Rows are ordered by job, then the overall
row, then groups in sorted order (:func:`sort_metrics`).

``group_metrics`` columns (:data:`METRIC_COLUMNS`)::

    variant, target, delegate    the job
    scope                        "overall" (all samples of the job), "group" (a group of one
                                 attribute) or "cell" (a group of the attributes' intersection)
    attribute                    the group attribute ("group" for a dataset with one, "sex",
                                 "race", "sex\u00d7race"...; see harness.metrics.attributes); ""
                                 on the overall row
    group                        group label; "" on the overall row
    n                            number of samples
    small_group                  n < MIN_GROUP_SIZE: the numbers are too noisy to read alone
    acc_ref, acc                 accuracy of the reference / the variant
    acc_drop                     acc_ref - acc (signed; positive = variant worse)
    drop_quantization            the part of acc_drop that quantization causes: acc_ref minus the
                                 accuracy of the same variant on the CPU reference kernels
    drop_delegate                the part the delegate causes: accuracy on reference kernels
                                 minus acc (drop_quantization + drop_delegate = acc_drop)
                                 (both: see :func:`attribute_drops`; NaN when no reference-kernel
                                 job of the variant exists in the run)
    loss_ref, loss               mean softmax cross-entropy (nats)
    excess_loss                  loss - loss_ref (Tran 2022's excess loss EL_g)
    logit_var_ref, logit_var     mean over samples of the per-sample variance of the logits
    margin_ref, margin           mean margin z_y - max_{k != y} z_k
    flip_rate                    share of samples whose prediction changed
    flip_right_to_wrong          share that the reference got right and the variant wrong
    flip_wrong_to_right          share that the reference got wrong and the variant right
                                 (acc_drop = flip_right_to_wrong - flip_wrong_to_right)
    kl                           mean KL(p_ref || p_variant), nats
    logit_mse                    mean over samples of the mean squared logit difference
    psi                          acc_drop of the group - acc_drop overall (NaN on overall rows)
    max_step_diff                largest |logit difference| in output quantization steps against the
                                 same variant's reference-kernel job (its baseline, as for
                                 drop_quantization); NaN for float outputs
    frac_logits_diff             share of the logits (samples x classes) that differ from that job's:
                                 by at least one step, or at all for float outputs
                                 (both: ``harness.metrics.steps.fill_step_columns``, which needs two
                                 jobs' logits; NaN from a per-sample frame alone and when the run
                                 has no reference-kernel job of the variant)

``disparity`` columns (:data:`DISPARITY_COLUMNS`), one row per job::

    variant, target, delegate, n, acc_ref, acc   the job and its overall row
    overall_drop                 overall acc_drop
    worst_group, worst_group_drop   group with the largest acc_drop (group_max of the drop),
                                 over the "group" rows of every attribute; named "sex=Female"
                                 when the dataset names its attributes (plain with one "group")
    best_group, best_group_drop     group with the smallest acc_drop (group_min of the drop)
    drop_gap                     worst_group_drop - best_group_drop (between_groups difference)
    psi, psi_group               max_g psi_g and its group (Balancing Act's accuracy-gap disparity)
    excess_loss_gap              max_g EL_g - min_g EL_g (Liu/Tran's phi)
    acc_gap_ref, acc_gap         max - min group accuracy under the reference / the variant, so a
                                 gap that was already there is not mistaken for quantization damage
    small_groups                 comma-separated groups and cells with n < MIN_GROUP_SIZE ("" if none)

Ties (two groups with the same drop) go to the group that sorts first. A job with no group rows
gets NaN numbers and "" names.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.metrics.attributes import CELL_SCOPE, expand, first_attribute_rows, qualified, scope_of
from harness.metrics.disparity import DISPARITY_DTYPES
# defined without pandas, for sign-off's light path; re-exported here with the tables they describe
from harness.metrics.names import GROUP, JOB_COLUMNS, METRIC_COLUMNS, MIN_GROUP_SIZE, OVERALL  # noqa: F401

# the columns of disparity(): the job, then Disparity's fields (one list, kept in the dataclass)
DISPARITY_COLUMNS: dict[str, str] = {**{k: "str" for k in JOB_COLUMNS}, **DISPARITY_DTYPES}

_SUM, _COUNT = "__sum", "__count"  # group_sums' columns: the per-sample column's sum / non-missing count

# Means over samples: metric column -> per-sample column it averages.
_MEANS = {
    "acc_ref": "correct_ref", "acc": "correct", "loss_ref": "loss_ref", "loss": "loss",
    "logit_var_ref": "logit_var_ref", "logit_var": "logit_var",
    "margin_ref": "margin_ref", "margin": "margin", "flip_rate": "flip",
    "flip_right_to_wrong": "_r2w", "flip_wrong_to_right": "_w2r", "kl": "kl", "logit_mse": "logit_mse",
}


def group_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Overall and per-group metrics of every job in a per-sample frame (see module docstring).

    A frame with an ``attribute`` column (``attributes.expand``) gets rows per attribute and group;
    one without is one attribute, "group".

    Example::

        metrics = group_metrics(per_sample(ref, run, test))
        metrics[metrics.scope == "group"][["group", "n", "acc_drop", "psi"]]
    """
    return metrics_from_sums(group_sums(frame))


def group_sums(frame: pd.DataFrame) -> pd.DataFrame:
    """The sufficient statistics of :func:`group_metrics`: per job, its overall row (``attribute``
    None) and each (attribute, group), ``n`` and, per averaged per-sample column, its sum and its
    count of non-missing values. Sums of frames of disjoint samples add up (:func:`add_sums`), so a
    large test set is scored chunk by chunk (``harness.metrics.score``) without a whole-set frame."""
    frame = expand(frame, None)
    work = frame.assign(_r2w=frame["correct_ref"] & ~frame["correct"],
                        _w2r=~frame["correct_ref"] & frame["correct"])
    keys = list(JOB_COLUMNS)
    overall = _sums(first_attribute_rows(work), keys).assign(attribute=None, group="")
    return pd.concat([overall, _sums(work, keys + ["attribute", "group"])], ignore_index=True)


def add_sums(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """:func:`group_sums` of several frames of disjoint samples, as one: sums added exactly
    (``math.fsum``, then rounded once), counts added. One part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    table = pd.concat(parts, ignore_index=True)
    keys = list(JOB_COLUMNS) + ["attribute", "group"]
    exact = {c: (math.fsum if c.endswith(_SUM) else "sum") for c in table.columns if c not in keys}
    return table.groupby(keys, sort=False, dropna=False).agg(exact).reset_index()


def metrics_from_sums(sums: pd.DataFrame) -> pd.DataFrame:
    """The :func:`group_metrics` rows of :func:`group_sums` (or :func:`add_sums`) statistics."""
    keys = list(JOB_COLUMNS)
    is_overall = sums["attribute"].isna().to_numpy()
    overall = _means(sums[is_overall], keys).assign(scope=OVERALL, attribute="", group="")
    by_group = _means(sums[~is_overall], keys + ["attribute", "group"])
    by_group["scope"] = [scope_of(a) for a in by_group["attribute"]] if len(by_group) else GROUP
    by_group = by_group.merge(overall[keys + ["acc_drop"]].rename(columns={"acc_drop": "_drop_all"}),
                              on=keys, how="left")
    by_group["psi"] = by_group["acc_drop"] - by_group["_drop_all"]
    overall["psi"] = np.nan
    steps = {c: np.nan for c in ("max_step_diff", "frac_logits_diff")}  # two jobs' logits: fill_step_columns
    overall, by_group = overall.assign(**steps), by_group.assign(**steps)
    result = pd.concat([_typed(overall, METRIC_COLUMNS), _typed(by_group, METRIC_COLUMNS)],
                       ignore_index=True)
    return attribute_drops(sort_metrics(result))


# The CPU reference kernels define what a quantized op computes; a delegate's departure from them
# is the delegate's own effect. Where a device has no reference-kernel job of the variant (e.g. a
# benchmark_model device), the reference-kernel job of the same variant on another device stands
# in. Reference kernels are portable C++, yet not bit-identical across runtime versions (LiteRT 2.3
# and tflite-runtime 2.14 differ by one output step on ~2 % of an int8 model's rows), so the
# stand-in is the closest baseline there is, not an exact one.
BASELINE_DELEGATE = "reference"


def baseline_target(targets_with_reference, target: str) -> str | None:
    """Whose reference-kernel job is the baseline of a job on ``target``: its own device's if it
    has one, else the first other device (in name order) that has one; None if none has."""
    if target in targets_with_reference:
        return target
    return min(targets_with_reference, default=None)


def attribute_drops(metrics: pd.DataFrame) -> pd.DataFrame:
    """Fill drop_quantization and drop_delegate of every row from the reference-kernel jobs.

    For a row of job (variant, target, delegate) and group g, the baseline is group g's row of
    the same variant's reference-kernel job on :func:`baseline_target`. drop_quantization =
    acc_ref - acc_baseline and drop_delegate = acc_drop - drop_quantization, so the two add up
    to acc_drop (NaN when the variant has no reference-kernel job in the run).
    """
    out = metrics.copy()
    base = metrics[metrics["delegate"] == BASELINE_DELEGATE]
    acc = {(r.variant, r.target, r.scope, r.attribute, r.group): r.acc for r in base.itertuples(index=False)}
    with_ref: dict[str, set] = {}
    for variant, target, *_ in acc:
        with_ref.setdefault(variant, set()).add(target)
    baseline = [acc.get((v, baseline_target(with_ref.get(v, ()), t), sc, a, g), np.nan)
                for v, t, sc, a, g in zip(out["variant"], out["target"], out["scope"], out["attribute"], out["group"])]
    out["drop_quantization"] = out["acc_ref"] - np.asarray(baseline, dtype=np.float64)
    out["drop_delegate"] = out["acc_drop"] - out["drop_quantization"]
    return out


def sort_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by job (variants in registry order), the overall row first, then each attribute's
    groups (attributes by name), then the intersections' cells; groups by name."""
    from harness.quantize.variants import known_variants

    rank = {name: i for i, name in enumerate(known_variants())}  # fp32 first ... mixed last
    scopes = {OVERALL: 0, GROUP: 1, CELL_SCOPE: 2}
    order = metrics.assign(_scope=metrics["scope"].map(lambda s: scopes.get(s, 3)),
                           _rank=metrics["variant"].map(lambda v: rank.get(v, len(rank))))
    order = order.sort_values(["_rank"] + list(JOB_COLUMNS) + ["_scope", "attribute", "group"], kind="mergesort")
    return order.drop(columns=["_scope", "_rank"]).reset_index(drop=True)


def disparity(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per job summarising how unevenly the variant's damage falls on the groups."""
    rows = []
    for job, part in metrics.groupby(list(JOB_COLUMNS), sort=True):
        overall = part[part["scope"] == OVERALL]
        groups = part[part["scope"] == GROUP].sort_values(["attribute", "group"], kind="mergesort")
        small = part[(part["scope"] != OVERALL) & part["small_group"]].sort_values(
            ["scope", "attribute", "group"], kind="mergesort")
        rows.append(dict(zip(JOB_COLUMNS, job)) | _overall_fields(overall) | _group_fields(groups)
                    | {"small_groups": ",".join(map(qualified, small["attribute"], small["group"]))})
    return _typed(pd.DataFrame(rows), DISPARITY_COLUMNS)


def _sums(work: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """n, and the sum and non-missing count of each averaged column, per combination of ``keys``
    (pandas' group sum is the same compensated sum as its group mean: sum / count == mean, bit for bit)."""
    grouped = work.groupby(keys, sort=True)
    columns = list(dict.fromkeys(_MEANS.values()))
    sums = grouped[columns].sum().add_suffix(_SUM)
    counts = grouped[columns].count().add_suffix(_COUNT)
    return pd.concat([sums, counts], axis=1).assign(n=grouped.size()).reset_index()


def _means(sums: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """n and the per-sample means for each combination of ``keys``, sorted by them."""
    sums = sums.sort_values(keys, kind="mergesort")
    out = sums[keys].reset_index(drop=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # a group whose values are all missing: NaN, as mean()
        for metric, column in _MEANS.items():
            total = sums[column + _SUM].to_numpy(np.float64)
            count = sums[column + _COUNT].to_numpy(np.float64)
            out[metric] = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    out["n"] = sums["n"].to_numpy(np.int64)
    out["small_group"] = out["n"] < MIN_GROUP_SIZE
    out["acc_drop"] = out["acc_ref"] - out["acc"]
    out["drop_quantization"] = out["drop_delegate"] = np.nan  # across jobs: attribute_drops
    out["excess_loss"] = out["loss"] - out["loss_ref"]
    return out


def _typed(table: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """``table`` restricted to ``schema``'s columns, in order, with its dtypes (also when empty)."""
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.items()})
    return table[list(schema)].astype(schema)


def _overall_fields(overall: pd.DataFrame) -> dict:
    if overall.empty:
        return {"n": 0, "acc_ref": np.nan, "acc": np.nan, "overall_drop": np.nan}
    row = overall.iloc[0]
    return {"n": int(row["n"]), "acc_ref": row["acc_ref"], "acc": row["acc"],
            "overall_drop": row["acc_drop"]}


def _group_fields(groups: pd.DataFrame) -> dict:
    if groups.empty:
        return {"worst_group": "", "worst_group_drop": np.nan, "best_group": "",
                "best_group_drop": np.nan, "drop_gap": np.nan, "psi": np.nan, "psi_group": "",
                "excess_loss_gap": np.nan, "acc_gap_ref": np.nan, "acc_gap": np.nan,
                "small_groups": ""}
    names = np.array([qualified(a, g) for a, g in zip(groups["attribute"], groups["group"])], dtype=object)
    drop = groups["acc_drop"].to_numpy()
    psi = groups["psi"].to_numpy()
    worst, best, most = int(np.argmax(drop)), int(np.argmin(drop)), int(np.argmax(psi))
    return {
        "worst_group": names[worst], "worst_group_drop": drop[worst],
        "best_group": names[best], "best_group_drop": drop[best],
        "drop_gap": drop[worst] - drop[best],
        "psi": psi[most], "psi_group": names[most],
        "excess_loss_gap": _spread(groups["excess_loss"]),
        "acc_gap_ref": _spread(groups["acc_ref"]), "acc_gap": _spread(groups["acc"]),
    }


def _spread(values: pd.Series) -> float:
    """group_max - group_min (fairlearn's between_groups difference, unsigned by nature)."""
    return float(values.max() - values.min())
