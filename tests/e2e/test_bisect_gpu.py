"""``qskew bisect`` on LiteRT's GPU (SwiftShader's Vulkan), slow: fp32 ``gpu`` against ``reference``.

The GPU job runs the fixed-batch copy it ran in the run, with every op output listed in the copy's
signature; its tensors come back as the accelerator's outputs. What bisect finds at the model's
output must agree with the run's own logits for the same samples."""

import numpy as np
import pytest

from harness import cli
from harness.bisect.run import BisectOptions, bisect
from harness.rundir import read_run
from support.vulkan import use_swiftshader

pytestmark = pytest.mark.slow


def test_bisect_a_gpu_job_against_the_reference_kernels(monkeypatch, tmp_path):
    use_swiftshader(monkeypatch, tmp_path)
    out = tmp_path / "run"
    assert cli.main(["demo", "--variants", "fp32", "--delegates", "gpu,reference", "--out", str(out),
                     "--no-progress"]) == 0
    result = bisect(out, BisectOptions("fp32/local/gpu", "fp32/local/reference", per_group=4))
    gpu, _ = result.dumps
    assert gpu.delegate_applied.startswith("gpu")
    table = result.table
    visible = table[table["on_a"] != "hidden"]
    assert set(visible["on_a"]) == {"input", "delegate"} and visible["op"].nunique() >= 4
    run = read_run(out)
    ids = run.test_set()["id"].to_numpy().astype(str)
    at = {s: i for i, s in enumerate(ids.tolist())}
    logits_a, logits_b = run.logits("fp32", "local", "gpu"), run.logits("fp32", "local", "reference")
    final = table[table["tensor_index"] == table.loc[table["order"].idxmax(), "tensor_index"]].set_index("sample")
    for sample in result.choice.ids:
        a = logits_a.values[list(logits_a.ids).index(sample)]
        b = logits_b.values[list(logits_b.ids).index(sample)]
        assert (final.loc[sample, "max_diff"] == 0) == bool(np.array_equal(a, b)), sample
        assert sample in at
