"""``qskew bisect``: where a device's tensors first part from a reference job's, per sample and group.

``select`` (jobs and samples), ``graph`` (the model read and edited with the TFLite schema),
``dump`` (a tensor job on a device), ``compare`` (the per-tensor table), ``run`` (the stage,
:func:`harness.bisect.run.bisect`); the per-group summary is ``harness.metrics.bisect`` (the report reads it too).
"""
