"""The names and columns of the metrics tables, importable without pandas.

``harness.metrics.groups`` builds the tables (and documents every column); the statistics
(``harness.metrics.stats``) and the light run reader of ``qskew signoff``
(``harness.rundir.light``) need only these names, and must not pay for importing pandas.
"""

from __future__ import annotations

# Below 100 samples the 95 % Wilson half-width at 90 % accuracy is about +-6 pp, larger than
# typical post-training-quantization drops, so such a group's numbers must not be read alone.
MIN_GROUP_SIZE = 100

JOB_COLUMNS = ("variant", "target", "delegate")
OVERALL = "overall"
GROUP = "group"

# The columns of ``groups.group_metrics`` (name -> dtype), documented in ``harness.metrics.groups``.
METRIC_COLUMNS: dict[str, str] = {
    "variant": "str", "target": "str", "delegate": "str", "scope": "str", "attribute": "str", "group": "str",
    "n": "int64", "small_group": "bool",
    "acc_ref": "float64", "acc": "float64", "acc_drop": "float64",
    "drop_quantization": "float64", "drop_delegate": "float64",
    "loss_ref": "float64", "loss": "float64", "excess_loss": "float64",
    "logit_var_ref": "float64", "logit_var": "float64",
    "margin_ref": "float64", "margin": "float64",
    "flip_rate": "float64", "flip_right_to_wrong": "float64", "flip_wrong_to_right": "float64",
    "kl": "float64", "logit_mse": "float64", "psi": "float64",
    "max_step_diff": "float64", "frac_logits_diff": "float64",
}
