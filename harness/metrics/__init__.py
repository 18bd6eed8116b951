"""Metrics of quantization skew: per-sample comparison and per-group aggregation.

``compare.per_sample(ref, run, test)`` pairs a variant's logits with the FP32 reference, one row per
test sample; ``groups.group_metrics(frame)`` aggregates that frame overall and by group, and
``groups.disparity(metrics)`` reduces it to one row per job. The submodules import pandas, so this
package does not re-export them (importing ``harness.metrics`` stays cheap).
"""
