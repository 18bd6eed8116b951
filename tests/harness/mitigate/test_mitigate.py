"""Host orchestration (harness/mitigate/mitigate.py): which layers stay float, and one real run.

The run (conftest ``mitigation_run``, ~30 s) is the demo with default options: QAT in its child
process, the variants converted and run on the local target next to int8 and mixed.
"""

import dataclasses

import numpy as np
import pytest

from harness import rundir
from harness.errors import ConfigError, ResultsError
from harness.mitigate.mitigate import QAT_FLOAT, QAT_INT8, QAT_MIXED, _refuse_stale, keep_plan
from harness.mitigate.options import MitigationOptions
from harness.quantize.options import QuantizeOptions

MITIGATED = {QAT_INT8, QAT_MIXED, QAT_FLOAT, "int8-balanced-calib"}


@pytest.fixture(scope="module")
def tiny_ops(tiny_keras3):
    from harness.paths import cache_dir
    from harness.quantize.convert import convert
    from harness.quantize.inspect import list_ops

    return list_ops(convert(tiny_keras3, "fp32", None, QuantizeOptions(), cache_dir("variants")).path)


def _plan(model, ops, regex=None, last_n=2):
    return keep_plan(model, ops, MitigationOptions(keep_layers_regex=regex),
                     QuantizeOptions(mixed_last_n=last_n), "tiny")


def test_by_default_qat_keeps_float_the_layers_mixed_raises(tiny_keras3, tiny_ops):
    assert _plan(tiny_keras3, tiny_ops).layers == ("conv", "out")
    plan = _plan(tiny_keras3, tiny_ops, last_n=1)
    assert plan.layers == ("out",) and plan.mixed_regex is None  # mixed-qat uses mixed's own recipe


def test_a_suggested_scope_regex_in_the_experiment_keeps_its_keras_layer_float(tiny_keras3, tiny_ops):
    """``qskew suggest-mixed`` prints a mixed_layers_regex of op scopes; QAT maps it to layers."""
    import re

    conv_op = next(op for op in tiny_ops if op.op_name == "CONV_2D")
    qopts = QuantizeOptions(mixed_layers_regex=f"^{re.escape(conv_op.scope)}$")
    plan = keep_plan(tiny_keras3, tiny_ops, MitigationOptions(), qopts, "tiny")
    assert plan.layers == ("conv",) and plan.mixed_regex is None


def test_keep_layers_regex_names_keras_layers_and_the_matching_ops(tiny_keras3, tiny_ops):
    from harness.quantize.mixed import choose_layers

    plan = _plan(tiny_keras3, tiny_ops, regex="^conv$")
    assert plan.layers == ("conv",)
    raised = choose_layers(tuple(tiny_ops), QuantizeOptions(mixed_layers_regex=plan.mixed_regex))
    assert [op.op_name for op in raised] == ["CONV_2D"]
    assert _plan(tiny_keras3, tiny_ops, regex="").layers == ()
    no_kernel = _plan(tiny_keras3, tiny_ops, regex="flat")
    assert no_kernel.layers == ("flat",) and no_kernel.mixed_regex is None


def test_keep_layers_matching_nothing_lists_the_layers(tiny_keras3, tiny_ops):
    with pytest.raises(ConfigError, match="matches no layer of model tiny; its layers: conv, flat, out"):
        _plan(tiny_keras3, tiny_ops, regex="attention")


@pytest.mark.slow
def test_mitigated_variants_are_in_metrics_csv_next_to_int8_and_mixed(mitigation_run):
    run = rundir.read_run(mitigation_run.run_dir)
    assert {a.variant for a in mitigation_run.artifacts} == MITIGATED
    assert {v for v, _, _ in run.jobs("ok")} == MITIGATED | {"int8", "mixed"}
    for variant in MITIGATED | {"int8", "mixed"}:
        rows = run.metrics[run.metrics["variant"] == variant]
        assert sorted(rows["group"]) == ["", "faint", "standard"], variant


@pytest.mark.slow
def test_int8_qat_is_full_integer_and_its_logits_differ_from_ptq_int8(mitigation_run):
    from harness.quantize.inspect import inspect_model

    art = next(a for a in mitigation_run.artifacts if a.variant == QAT_INT8)
    info = inspect_model(art.path)
    assert [t.dtype for t in info.inputs + info.outputs] == ["int8", "int8"]
    assert {dtype for _, dtype, _ in info.op_counts} == {"int8"}
    assert set(dict(info.tensor_dtypes)) <= {"int8", "int32"}  # int32: biases only
    run = rundir.read_run(mitigation_run.run_dir)
    qat = run.logits(QAT_INT8, "local", "xnnpack")
    ptq = run.logits("int8", "local", "xnnpack")
    assert np.array_equal(qat.ids, ptq.ids)
    assert np.abs(qat.values - ptq.values).mean() > 0.05  # another model, not a copy of the PTQ one


@pytest.mark.slow
def test_qat_kept_the_mixed_layers_float_and_fine_tuned_on_balanced_epochs(mitigation_run):
    qat = mitigation_run.qat
    assert qat.kept_layers == ("dense", "logits") and qat.annotated_layers == ("conv1", "conv2", "pool", "flatten")
    assert qat.group_weights is None and len(qat.history["loss"]) == MitigationOptions().epochs
    for shares in qat.epoch_group_shares:
        assert shares == pytest.approx({"faint": 0.5, "standard": 0.5})
    manifest = rundir.read_run(mitigation_run.run_dir).manifest
    recipes = {v["variant"]: v["recipe"] for v in manifest["variants"]}
    assert recipes[QAT_INT8]["qat"]["kept_float_layers"] == ["dense", "logits"]
    # mixed-qat raises the same number of ops to 16 bits as the plain mixed
    assert len(recipes[QAT_MIXED]["layers_16bit"]) == len(recipes["mixed"]["layers_16bit"]) == 2


@pytest.mark.slow
def test_balanced_calibration_variant_sits_next_to_the_random_one(mitigation_run):
    manifest = rundir.read_run(mitigation_run.run_dir).manifest
    calib = {v["variant"]: v["calibration"] for v in manifest["variants"]}
    assert calib["int8"]["strategy"] == "random"
    assert calib["int8-balanced-calib"]["strategy"] == "balanced"
    assert calib["int8-balanced-calib"]["group_shares"] == {"faint": 0.5, "standard": 0.5}
    assert calib["int8"]["group_shares"]["faint"] < 0.25  # random: about the training share (12 %)


@pytest.mark.slow
def test_resuming_with_a_differently_built_variant_is_refused(mitigation_run):
    arts = list(mitigation_run.artifacts)
    _refuse_stale(mitigation_run.run_dir, arts)  # the same builds: fine
    other = [dataclasses.replace(a, sha256="0" * 64) if a.variant == QAT_INT8 else a for a in arts]
    with pytest.raises(ResultsError, match="'int8-qat' built with other options"):
        _refuse_stale(mitigation_run.run_dir, other)
