"""compare_dumps on hand-made dumps: steps for integer tensors, relative for float ones, hidden
tensors, each sample's first exceeding tensor, and the group summary built on it."""

import numpy as np

from harness.bisect.compare import compare_dumps
from harness.bisect.dump import KeptTensor, TensorDump
from harness.bisect.graph import GraphFacts, OpFacts, TensorFacts
from harness.metrics.bisect import summarize, summary_lines

IDS, GROUPS = np.array(["s0", "s1", "s2"]), np.array(["faint", "faint", "standard"])
GRAPH = GraphFacts(
    ops=(OpFacts(0, "CONV_2D", "padding=SAME", (0, 3), (1,), "per-channel"),
         OpFacts(1, "FULLY_CONNECTED", "", (1, 4), (2,), "per-channel")),
    tensors=tuple(TensorFacts(i, f"m/t{i}", i >= 3) for i in range(5)), inputs=(0,), outputs=(2,))


def _dump(values, on="cpu", skip=()):
    kept = tuple(KeptTensor(i, f"m/t{i}", "int8" if i < 2 else "float32", 0.5 if i < 2 else 0.0, 0, i - 1,
                            "input" if i == 0 else on) for i in values if i not in skip)
    return TensorDump("dev", "builtin", "rt", "none", kept, {k.index: values[k.index] for k in kept}, (), 0.0)


def _values(conv_shift, logits_scale):
    x = np.arange(12, dtype=np.int8).reshape(3, 4)
    conv = np.arange(12, dtype=np.int8).reshape(3, 4) + np.array(conv_shift, np.int8)[:, None] * np.eye(1, 4, dtype=np.int8)
    logits = np.ones((3, 2), np.float32) * np.array(logits_scale, np.float32)[:, None]
    return {0: x, 1: conv, 2: logits}


def test_steps_relative_and_the_first_exceeding_tensor_per_sample():
    a, b = _dump(_values([0, 2, 0], [1.0, 1.0, 1.5])), _dump(_values([0, 0, 0], [1.0, 1.0, 1.0]))
    table = compare_dumps(a, b, GRAPH, IDS, GROUPS)
    assert len(table) == 9 and list(table["sample"]) == ["s0"] * 3 + ["s1"] * 3 + ["s2"] * 3
    s1 = table[table["sample"] == "s1"].set_index("tensor_index")
    assert (s1.loc[1, "max_diff"], s1.loc[1, "mean_diff"], s1.loc[1, "frac_diff"]) == (2.0, 0.5, 0.25)
    assert s1.loc[1, "unit"] == "steps" and s1.loc[2, "unit"] == "relative"
    s2 = table[table["sample"] == "s2"].set_index("tensor_index")
    assert s2.loc[2, "max_diff"] == 0.5 and s2.loc[1, "max_diff"] == 0
    firsts = table[table["first"]].set_index("sample")["tensor_index"].to_dict()
    assert firsts == {"s1": 1, "s2": 2}  # s0 differs nowhere
    summary = summarize(table).set_index("group")
    assert summary.loc["faint", "n_differ"] == 1 and summary.loc["faint", "op"] == "CONV_2D"
    lines = summary_lines(summarize(table), "flipped")
    assert lines[0] == "faint: 1 of 2 flipped samples first differ at m/t1 (CONV_2D, int8, per-channel), max 2 steps"
    assert lines[1].startswith("standard: 1 of 1 flipped samples first differ at m/t2 (FULLY_CONNECTED, float32")


def test_a_tensor_job_a_could_not_see_is_hidden_and_a_delegate_output_names_its_partition():
    a = _dump(_values([1, 1, 1], [1.0, 1.0, 1.0]), on="delegate", skip=(1,))
    b = _dump(_values([0, 0, 0], [1.0, 1.0, 1.0]))
    table = compare_dumps(a, b, GRAPH, IDS, GROUPS).set_index(["sample", "tensor_index"])
    assert table.loc[("s0", 1), "on_a"] == "hidden" and np.isnan(table.loc[("s0", 1), "max_diff"])
    assert table.loc[("s0", 2), "on_a"] == "delegate" and table.loc[("s0", 2), "partition"] == 1
    assert not table["first"].any()  # the only difference is inside what A could not see
