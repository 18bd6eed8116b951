"""Per-sample comparison of a variant's logits with the FP32 reference (metrics catalogue §3.3-3.4).

:func:`per_sample` joins the host reference logits, one device run and the test set on the sample
ids and returns one row per test sample with the paired quantities every later statistic is built
from (accuracy, loss, flips, logit variance, margin, output divergence). All arithmetic is
vectorised numpy in float64, whatever dtype the logits arrived in; softmax quantities go through a
log-sum-exp so that large logits neither overflow nor lose precision.

Columns (:data:`PER_SAMPLE_COLUMNS`, always in this order)::

    id, group, label                 the test sample (str, str, int64)
    variant, target, delegate        the job the variant logits come from (str)
    pred_ref, pred                   argmax of the reference / variant logits (int64; first on ties)
    correct_ref, correct             pred == label (bool)
    loss_ref, loss                   softmax cross-entropy -log p(label), natural log (float64); for
                                     a model whose outputs are probabilities (``Logits.outputs``),
                                     -log of its own output (:func:`log_probabilities`); kl likewise
    logit_var_ref, logit_var         variance of the K logits of the sample, ddof=0 (float64)
    margin_ref, margin               z_label - max_{k != label} z_k; negative = misclassified
    kl                               KL(p_ref || p_variant) in nats (>= 0)
    logit_mse                        mean over classes of (z_ref - z_variant)^2
    flip                             pred_ref != pred (bool)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import DatasetError
from harness.records import DeviceRun, GroupedDataset, Logits

PROBABILITY_FLOOR = 1e-7  # an int8 softmax rounds small probabilities to 0; log(0) would make the loss infinite

PER_SAMPLE_COLUMNS = (
    "id", "group", "label", "variant", "target", "delegate", "pred_ref", "pred",
    "correct_ref", "correct", "loss_ref", "loss", "logit_var_ref", "logit_var",
    "margin_ref", "margin", "kl", "logit_mse", "flip",
)


def per_sample(ref: Logits, run: DeviceRun, test: GroupedDataset) -> pd.DataFrame:
    """One row per test sample comparing ``run``'s logits with the reference ``ref``.

    ``ref`` is joined to ``test`` on ids (any order, same set); ``run.logits`` rows must already
    be in ``test`` order, as the on-device stage returns them. Raises DatasetError when ids or
    shapes do not line up, naming the job; ValueError if ``run`` failed (it has no logits).

    Example::

        frame = per_sample(ref_logits, device_run, ds.subset("test"))
        frame.groupby("group")["flip"].mean()
    """
    return compare_samples(ref, run, test.ids, test.group, test.y,
                           num_classes=test.num_classes, dataset=test.name)


def compare_samples(ref: Logits, run: DeviceRun, ids, groups, labels, *, num_classes: int | None = None,
                    dataset: str = "test set") -> pd.DataFrame:
    """:func:`per_sample` from the test samples' ``ids``, ``groups`` and ``labels`` arrays (in the
    order of ``run.logits``' rows), e.g. as a run directory stores them; ``num_classes`` None
    takes K from the logits. ``dataset`` only names the data in errors."""
    job = f"{run.variant}/{run.target}/{run.delegate}"
    if run.logits is None:
        raise ValueError(f"job {job} has no logits (it failed: {run.error}); record it as a failure")
    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels).astype(np.int64)
    z_ref = align_reference(ref, ids, job)
    z_var = _as_matrix(run.logits, f"logits of job {job}")
    _check_shapes(z_ref, z_var, labels, z_ref.shape[1] if num_classes is None else num_classes, dataset, job)

    pred_ref, pred = z_ref.argmax(axis=1), z_var.argmax(axis=1)
    logp_ref, logp_var = log_probabilities(z_ref, ref.outputs), log_probabilities(z_var, ref.outputs)
    rows = np.arange(len(ids))
    columns = {
        "id": ids, "group": np.asarray(groups).astype(str), "label": labels,
        "variant": run.variant, "target": run.target, "delegate": run.delegate,
        "pred_ref": pred_ref.astype(np.int64), "pred": pred.astype(np.int64),
        "correct_ref": pred_ref == labels, "correct": pred == labels,
        "loss_ref": -logp_ref[rows, labels], "loss": -logp_var[rows, labels],
        "logit_var_ref": z_ref.var(axis=1), "logit_var": z_var.var(axis=1),
        "margin_ref": margin(z_ref, labels), "margin": margin(z_var, labels),
        "kl": kl_divergence(logp_ref, logp_var),
        "logit_mse": np.mean((z_ref - z_var) ** 2, axis=1),
        "flip": pred_ref != pred,
    }
    frame = pd.DataFrame(columns, columns=list(PER_SAMPLE_COLUMNS))
    for name in ("id", "group", "variant", "target", "delegate"):
        frame[name] = frame[name].astype(str)
    return frame


def log_probabilities(z: np.ndarray, outputs: str = "logits") -> np.ndarray:
    """Row-wise log-probabilities of a model's outputs: ``log_softmax(z)`` for logits; for outputs
    that are probabilities already (``outputs == "probabilities"``: a final softmax or sigmoid),
    their logarithm, floored at ``PROBABILITY_FLOOR`` and renormalised so that each row sums to 1
    (sigmoid rows, or an int8 softmax's rounded rows, need not)."""
    if outputs == "probabilities":
        return log_softmax(np.log(np.clip(np.asarray(z, dtype=np.float64), PROBABILITY_FLOOR, None)))
    return log_softmax(z)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, ``z - logsumexp(z)``, stable for large logits (float64)."""
    z = np.asarray(z, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    lse = top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))
    return z - lse


def margin(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``z_y - max_{k != y} z_k`` per row; needs at least two classes."""
    z = np.asarray(z, dtype=np.float64)
    rows = np.arange(z.shape[0])
    others = z.copy()
    others[rows, labels] = -np.inf
    return z[rows, labels] - others.max(axis=1)


def kl_divergence(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) in nats from log-probabilities; rounding below zero is clipped to 0."""
    p = np.exp(logp)
    return np.maximum((p * (logp - logq)).sum(axis=1), 0.0)


def align_reference(ref: Logits, ids: np.ndarray, job: str) -> np.ndarray:
    """Reference logits (float64) reordered to ``ids``; the id sets must be equal and unique.

    ``job`` only names the job in the DatasetError raised otherwise.
    """
    ref_ids = np.asarray(ref.ids).astype(str)
    z_ref = _as_matrix(ref.values, "reference logits")
    if ref_ids.shape[0] != z_ref.shape[0]:
        raise DatasetError(f"reference logits have {z_ref.shape[0]} rows for {ref_ids.shape[0]} ids")
    if np.array_equal(ref_ids, ids):
        return z_ref
    for what, arr in (("test set", ids), ("reference", ref_ids)):
        if np.unique(arr).shape[0] != arr.shape[0]:
            raise DatasetError(f"{what} ids are not unique (job {job})")
    missing = np.setdiff1d(ids, ref_ids)
    extra = np.setdiff1d(ref_ids, ids)
    if missing.size or extra.size:
        raise DatasetError(
            f"reference ids do not match the test ids for job {job}: {missing.size} missing "
            f"(e.g. {missing[:3].tolist()}), {extra.size} extra (e.g. {extra[:3].tolist()})")
    order = np.argsort(ref_ids, kind="stable")
    return z_ref[order[np.searchsorted(ref_ids[order], ids)]]


def _as_matrix(values: np.ndarray, what: str) -> np.ndarray:
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 2:
        raise DatasetError(f"{what} must be [N, K], got shape {z.shape}")
    return z


def _check_shapes(z_ref: np.ndarray, z_var: np.ndarray, labels: np.ndarray, num_classes: int,
                  dataset: str, job: str) -> None:
    n, k = z_ref.shape
    if z_var.shape != (n, k):
        raise DatasetError(f"job {job} returned logits of shape {z_var.shape}; the reference has {(n, k)}")
    if k != num_classes or k < 2:
        raise DatasetError(f"dataset {dataset!r} has {num_classes} classes but the model "
                           f"outputs {k} logits (job {job}); per-sample metrics need K >= 2 logits")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise DatasetError(f"dataset {dataset!r} has labels outside [0, {k}) (job {job})")
