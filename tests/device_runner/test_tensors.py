"""Tensor jobs (``device_runner/tensors.py``): every tensor kept per sample, through the plain runner
files as a board has them, with the builtin kernels, and with XNNPACK and LiteRT's CompiledModel on a
promoted model copy."""

import json

import numpy as np
import pytest

from device_runner import protocol
from harness.bisect.graph import graph_facts, promote_outputs
from harness.bisect.run import ALIASING_OPS

N = 7


def _tensor_job(job_folder, model, delegate, **options):
    folder = job_folder(model, n=N, delegate=delegate, batch_size=4, **options)
    job = json.loads((folder / protocol.JOB_FILE).read_text())
    job["tensors"] = {"file": "tensors.npz"}
    (folder / protocol.JOB_FILE).write_text(protocol.dumps(job))
    return folder


@pytest.mark.parametrize("model", ["int8", "fixed4_int8"])
def test_builtin_kernels_keep_every_op_output_and_the_usual_outputs(tiny_tflite, job_folder, board_runner,
                                                                    run_runner, model):
    folder = _tensor_job(job_folder, tiny_tflite[model], "builtin")
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == 0, proc.stderr
    kept = result["tensors"]["kept"]
    graph = graph_facts(tiny_tflite[model].read_bytes())
    wanted = [t for op in graph.ops for t in op.outputs]
    assert [k["index"] for k in kept] == list(graph.inputs) + wanted  # input, then op outputs in order
    assert {k["on"] for k in kept} == {"input", "cpu"}
    with np.load(folder / "tensors.npz", allow_pickle=False) as npz:
        values = {k: npz[k] for k in npz.files}
    assert all(v.shape[0] == N for v in values.values())
    outputs = np.load(folder / "outputs.npy")
    assert np.array_equal(outputs, values[f"t{graph.outputs[0]}"])
    plain = job_folder(tiny_tflite[model], n=N, delegate="builtin", batch_size=4)
    proc, _ = run_runner(board_runner, plain)
    assert proc.returncode == 0 and np.array_equal(np.load(plain / "outputs.npy"), outputs)


def test_xnnpack_on_a_promoted_copy_hands_back_every_tensor_of_its_partitions(tiny_tflite, job_folder, board_runner,
                                                                            run_runner, tmp_path):
    promoted = tmp_path / "promoted.tflite"
    promoted.write_bytes(promote_outputs(tiny_tflite["fp32"].read_bytes()))
    folder = _tensor_job(job_folder, promoted, "xnnpack")
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == 0, proc.stderr
    assert result["delegate_applied"] == "xnnpack"
    graph = graph_facts(tiny_tflite["fp32"].read_bytes())
    kept = {k["index"]: k["on"] for k in result["tensors"]["kept"]}
    assert set(kept) == set(graph.inputs) | {t for op in graph.ops for t in op.outputs}
    assert "delegate" in kept.values()


def test_cpu_compiled_on_a_promoted_copy_hands_back_every_signature_output(tiny_tflite, job_folder, board_runner,
                                                                          run_runner, tmp_path):
    promoted = tmp_path / "promoted.tflite"
    promoted.write_bytes(promote_outputs(tiny_tflite["int8"].read_bytes(), skip_ops=ALIASING_OPS))
    folder = _tensor_job(job_folder, promoted, "cpu-compiled")
    proc, result = run_runner(board_runner, folder)
    assert proc.returncode == 0, proc.stderr
    graph = graph_facts(tiny_tflite["int8"].read_bytes())
    wanted = {t for op in graph.ops if op.op not in ALIASING_OPS for t in op.outputs}
    kept = {k["index"]: k["on"] for k in result["tensors"]["kept"]}
    assert kept == {**{t: "input" for t in graph.inputs}, **{t: "delegate" for t in wanted}}
    builtin = _tensor_job(job_folder, tiny_tflite["int8"], "builtin")
    proc, _ = run_runner(board_runner, builtin)
    with np.load(folder / "tensors.npz") as a, np.load(builtin / "tensors.npz") as b:
        assert all(a[f"t{t}"].shape == b[f"t{t}"].shape for t in wanted)
