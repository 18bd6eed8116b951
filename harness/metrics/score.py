"""Score one finished job: everything the run directory stores about it, computed once here.

The metrics stage sits between the device and the run directory: :func:`score_job` compares a job's
logits with the FP32 reference and hands the writer (``harness.rundir.writer.RunWriter.add_run``) a
:class:`JobScore` to store; the writer computes nothing. The scores are computed on exactly the
float32 values the writer stores, so the run directory's metrics are reproducible from its
predictions.

Example::

    score = score_job(device_run, ref, test)
    writer.add_run(device_run, score)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import DatasetError
from harness.metrics.attributes import Attributes, expand
from harness.metrics.compare import align_reference, compare_samples
from harness.metrics.disparity import Disparity
from harness.metrics.groups import add_sums, disparity, group_sums, metrics_from_sums
from harness.records import DeviceRun, GroupedDataset, Logits, row_chunks, same_rows

# Samples compared per step: the per-sample frame and a few [rows, K] float64 arrays of one chunk
# (tens of MB for K = 10), whatever the size of the test set; demo-size sets are one chunk.
SCORE_ROWS = 32_768

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class JobScore:
    """One job's scores and the per-sample rows they were computed from (all in test order)."""

    job: tuple[str, str, str]      # (variant, target, delegate)
    ids: np.ndarray                # sample ids (str): the test set's own array, not a copy
    groups: np.ndarray             # group labels (str): each sample's cell with several attributes
    labels: np.ndarray             # true classes (int64)
    logits: np.ndarray             # the variant's logits [N, K], float32: exactly what was scored
    metrics: "pd.DataFrame"        # group_metrics rows of this job (overall row, then groups)
    summary: Disparity             # the job's disparity numbers (DISPARITY_COLUMNS without the job)
    placement: tuple[dict, ...]    # rows of harness.placement.PLACEMENT_COLUMNS

    @property
    def preds(self) -> np.ndarray:
        """The argmax of the variant's logits (int64), computed when asked: not kept with the
        score (N int64 per job); the writer takes it chunk by chunk from ``logits``."""
        return self.logits.argmax(axis=1).astype(np.int64)


def score_job(run: DeviceRun, ref: Logits, test: GroupedDataset, rows: int = SCORE_ROWS) -> JobScore:
    """Compare a finished job (``run.ok``) with the reference ``ref`` on ``test``.

    The samples are compared ``rows`` at a time: each chunk's per-sample frame is reduced to its
    per-group sums at once (``groups.group_sums``), and the sums of the chunks are added, so no
    whole-set frame or [N, K] float64 temporary is made. A test set of at most ``rows`` samples is
    one chunk: its numbers are exactly those of ``group_metrics(per_sample(...))``; above, the
    chunks' sums are added exactly (``math.fsum``): the means of counts (accuracies, flip rates,
    drops, psi) are still exactly those of one pass, the means of float values (loss, margin,
    logit variance, KL, logit MSE) may differ from it in the last bit.

    Raises ValueError for a failed run (it has no logits; record it as a failure) and DatasetError
    when ids or shapes do not line up.
    """
    from harness.placement import placement_rows

    job = (run.variant, run.target, run.delegate)
    if run.logits is None:
        raise ValueError(f"job {'/'.join(job)} has no logits (it failed: {run.error}); record it as a failure")
    # compute on exactly the float32 values stored, so the stored metrics are reproducible from the file
    logits = np.asarray(run.logits, dtype=np.float32)
    ref = _aligned(ref, test, logits, "/".join(job))
    attrs = Attributes(test.attributes, test.intersections)
    sums = []
    columns = (test.ids, test.group, test.y, ref.values, logits)  # read by row_chunks: mapped pages go back
    for chunks in zip(*(row_chunks(c, rows) for c in columns)):
        ids, groups, labels, z_ref, z = (c for _, c in chunks)
        frame = compare_samples(Logits(ids=ids, values=z_ref, outputs=ref.outputs), replace(run, logits=z),
                                ids, groups, labels, num_classes=test.num_classes, dataset=test.name)
        sums.append(group_sums(expand(frame, attrs)))
    metrics = metrics_from_sums(add_sums(sums))
    summary = Disparity.from_row(disparity(metrics).iloc[0])
    return JobScore(job=job, ids=test.ids, groups=test.group, labels=test.y, logits=logits,
                    metrics=metrics, summary=summary, placement=tuple(placement_rows(job, run.execution_plan)))


def _aligned(ref: Logits, test: GroupedDataset, logits: np.ndarray, job: str) -> Logits:
    """``ref`` as float32 (the values the run directory stores) with its rows in test order (as it
    comes, unless its ids are in another order), after checking that the job's logits have one row
    per test sample."""
    if logits.ndim != 2 or logits.shape[0] != len(test) or np.shape(ref.values)[0] != len(test):
        raise DatasetError(f"job {job} returned logits of shape {logits.shape}; the reference has "
                           f"{np.shape(ref.values)} and the test set {len(test)} samples")
    if same_rows(np.asarray(ref.ids), test.ids):  # float32 as stored (a float32 mapping stays mapped: no copy)
        return Logits(ids=ref.ids, values=np.asarray(ref.values, dtype=np.float32), outputs=ref.outputs)
    values = align_reference(ref, np.asarray(test.ids).astype(str), job).astype(np.float32)  # float32 -> 64 -> 32: exact
    return Logits(ids=test.ids, values=values, outputs=ref.outputs)
