"""harness/runners/common.py: the batch rule and splitting the outputs a device wrote, shared by the
runner kinds."""

from __future__ import annotations

import numpy as np
import pytest

from harness.records import TensorIO
from harness.runners import common


def _io(dtype, shape, signature, scale=0.0, zero_point=0, name="t"):
    return TensorIO(name=name, index=0, dtype=dtype, shape=tuple(shape), shape_signature=tuple(signature),
                    scale=scale, zero_point=zero_point)


def test_batch_size_comes_from_the_model():
    dynamic = _io("int8", (1, 8, 8, 1), (-1, 8, 8, 1))
    assert common.choose_batch(dynamic, 64, 150) == (64, True)
    assert common.choose_batch(dynamic, 64, 10) == (10, True)
    assert common.choose_batch(_io("float32", (4, 8, 8, 1), (4, 8, 8, 1)), 64, 150) == (4, False)


def _batches(counts, fed):
    out, start = [], 0
    for i, m in enumerate(counts):
        out.append(common.Batch(i, start, m, fed if fed else m, "0" * 64, None))
        start += m
    return out


def test_split_outputs_several_outputs_dynamic_batch():
    logits = _io("int8", (1, 3), (-1, 3), 0.5, -2)
    extra = _io("float32", (1, 2), (-1, 2))
    batches = _batches([2, 1], None)
    rows = [(np.array([[1, 2, 3], [4, 5, 6]], np.int8), np.array([[.5, 1.5], [2.5, 3.5]], np.float32)),
            (np.array([[7, 8, 9]], np.int8), np.array([[4.5, 5.5]], np.float32))]
    data = b"".join(a.tobytes() + b.tobytes() for a, b in rows)  # per batch: output 0, then output 1
    first, second = common.split_outputs(data, [logits, extra], True, batches)
    assert first.dtype == np.int8 and first.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert second.dtype == np.float32 and second.tolist() == [[.5, 1.5], [2.5, 3.5], [4.5, 5.5]]
    with pytest.raises(ValueError, match="34 bytes, but the model.s 2 output.s. take 33 bytes"):
        common.split_outputs(data + b"\0", [logits, extra], True, batches)


def test_split_outputs_fixed_batch_drops_the_padding():
    out = _io("float32", (4, 2), (4, 2))
    batches = _batches([4, 1], 4)  # 5 samples: 4, then 1 padded to 4
    data = np.arange(16, dtype=np.float32).tobytes()
    (got,) = common.split_outputs(data, [out], False, batches)
    assert got.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_dequantize_uses_scale_and_zero_point_and_keeps_floats():
    raw = np.array([[-2, 0, 4]], np.int8)
    assert common.dequantize(raw, 0.5, -2).tolist() == [[0.0, 1.0, 3.0]]
    floats = np.array([[0.25, -1.5]], np.float32)
    assert common.dequantize(floats, 0.0, 0).tolist() == [[0.25, -1.5]]


def test_a_float_output_is_never_rescaled_by_a_device_reported_scale():
    floats = np.array([[0.25, -1.5]], np.float32)
    assert common.dequantize(floats, 0.5, 3).tolist() == [[0.25, -1.5]]
    assert common.dequantize(floats.astype(np.float16), 0.5, 3).dtype == np.float32


def test_nan_or_inf_logits_are_a_job_error_naming_samples_and_groups():
    from support.tiny_models import make_test_set

    test = make_test_set(6)
    z = np.zeros((6, 3), np.float32)
    assert common.nonfinite_problem(z, test) is None
    z[1, 0], z[4, 2] = np.nan, np.inf
    problem = common.nonfinite_problem(z, test)
    assert problem.startswith("outputs: 2 of 6 samples have NaN or infinite logits")
    assert f"'{test.ids[1]}', '{test.ids[4]}'" in problem
    groups = sorted({str(test.group[1]), str(test.group[4])})
    assert all(f"{g}: " in problem for g in groups)
