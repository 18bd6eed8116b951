"""Host FP32 reference: the Keras model's own logits for the test samples, the baseline of every comparison.

Inputs are the stored samples with the dataset's preprocessing applied (float32), the same mapping the
device runner applies; rows of the result follow ``test.ids`` exactly.

>>> ref = reference_logits(model, dataset.subset("test"))  # doctest: +SKIP
>>> ref.values.shape  # doctest: +SKIP
(719, 10)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.errors import ModelError
from harness.records import GroupedDataset, Logits

DEFAULT_BATCH_SIZE = 256  # large enough to amortize per-batch overhead, small enough for any host


def reference_logits(model: Any, test: GroupedDataset, batch_size: int = DEFAULT_BATCH_SIZE) -> Logits:
    """FP32 logits [N, K] of ``model`` on ``test``, rows aligned with ``test.ids``."""
    x = test.preprocess.apply(test.x)
    try:
        values = model.predict(x, batch_size=batch_size, verbose=0)
    except Exception as exc:  # TensorFlow raises many types; translate once, here
        raise ModelError(f"model {model.name!r} failed on dataset {test.name!r}: {exc}") from exc
    if isinstance(values, dict) and len(values) == 1:
        values = next(iter(values.values()))
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != len(test):
        raise ModelError(f"model {model.name!r} returned shape {values.shape} for {len(test)} samples; "
                         "qskew needs logits [samples, classes]")
    return Logits(ids=test.ids, values=values)
