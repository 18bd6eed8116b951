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

from harness.metrics.attributes import Attributes, expand
from harness.metrics.compare import per_sample
from harness.metrics.disparity import Disparity
from harness.metrics.groups import disparity, group_metrics
from harness.records import DeviceRun, GroupedDataset, Logits

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)
class JobScore:
    """One job's scores and the per-sample rows they were computed from (all in test order)."""

    job: tuple[str, str, str]      # (variant, target, delegate)
    ids: np.ndarray                # sample ids (str)
    groups: np.ndarray             # group labels (str): each sample's cell with several attributes
    labels: np.ndarray             # true classes (int64)
    preds: np.ndarray              # argmax of the variant's logits (int64)
    logits: np.ndarray             # the variant's logits [N, K], float32: exactly what was scored
    metrics: "pd.DataFrame"        # group_metrics rows of this job (overall row, then groups)
    summary: Disparity             # the job's disparity numbers (DISPARITY_COLUMNS without the job)
    placement: tuple[dict, ...]    # rows of harness.placement.PLACEMENT_COLUMNS


def score_job(run: DeviceRun, ref: Logits, test: GroupedDataset) -> JobScore:
    """Compare a finished job (``run.ok``) with the reference ``ref`` on ``test``.

    Raises ValueError for a failed run (it has no logits; record it as a failure) and DatasetError
    when ids or shapes do not line up.
    """
    from harness.placement import placement_rows

    job = (run.variant, run.target, run.delegate)
    # compute on exactly the float32 values stored, so the stored metrics are reproducible from the file
    ref = Logits(ids=ref.ids, values=np.asarray(ref.values, dtype=np.float32), outputs=ref.outputs)
    logits = None if run.logits is None else np.asarray(run.logits, dtype=np.float32)
    frame = per_sample(ref, replace(run, logits=logits), test)
    metrics = group_metrics(expand(frame, Attributes(test.attributes, test.intersections)))
    summary = Disparity.from_row(disparity(metrics).iloc[0])
    return JobScore(job=job, ids=frame["id"].to_numpy(), groups=frame["group"].to_numpy(),
                    labels=frame["label"].to_numpy(np.int64), preds=frame["pred"].to_numpy(np.int64),
                    logits=logits, metrics=metrics, summary=summary,
                    placement=tuple(placement_rows(job, run.execution_plan)))
