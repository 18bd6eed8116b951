"""Tensor jobs (``qskew bisect``): run the samples one at a time and keep every tensor the device
computed, not only output 0.

A job.json with the optional key ``"tensors": {"file": "tensors.npz"}`` (additive, protocol 1.5)
makes the runner build its interpreter with ``experimental_preserve_all_tensors=True`` and, after
each sample's invoke, read back:

* the model's input tensor(s);
* the output of every node that ran on the CPU kernels;
* the outputs of every DELEGATE node (a delegate computes its partition's inner tensors in its own
  memory; the host makes them visible by promoting them to model outputs in a copy of the model,
  so that they leave the partition as its outputs).

``tensors.npz`` holds one array per kept tensor, key ``t<tensor index>``, shape [N, ...] in the
tensor's own dtype (raw quantized values). result.json gains ``tensors``::

    {"file": "tensors.npz", "sha256": "<sha256 of the file's bytes>",
     "kept": [{"index": 12, "name": "...", "dtype": "int8", "scale": 0.0059, "zero_point": -128,
               "node": 0, "on": "cpu"}, ...]}      # "on": input | cpu | delegate

Samples run one by one (batch 1, or the fixed batch padded): every tensor's first dimension is then
that sample alone, whatever a RESHAPE does to the batch. CompiledModel delegates (gpu...) expose no
tensors by index: such a job is refused.
"""

import hashlib
import io
import time

import numpy as np

if __package__:
    from device_runner import protocol
    from device_runner.inference import to_model_input
    from device_runner.jobdir import JobFailure, atomic_write, check_input_shape, in_job, remove_stale
    from device_runner.runtime import (DELEGATE_OP_NAME, applied_delegate, choose_batch, execution_plan,
                                       make_interpreter, prepare, tensor_info)
else:  # run as a plain script on a board: the sibling files are top-level modules
    import protocol
    from inference import to_model_input
    from jobdir import JobFailure, atomic_write, check_input_shape, in_job, remove_stale
    from runtime import (DELEGATE_OP_NAME, applied_delegate, choose_batch, execution_plan, make_interpreter,
                         prepare, tensor_info)

TENSORS_KEY = "tensors"  # the job.json key that asks for a tensor job


def run_tensor_job(job_dir, job, result, clock, runtime, x, t0):
    """Run a tensor job; fills result["tensors"] and returns (output 0 [N, ...], in_info, out_info,
    batch) for the runner's usual outputs.npy."""
    if job["delegate"] in protocol.COMPILED_DELEGATES:
        raise JobFailure("delegate", "a tensor job cannot run on the CompiledModel delegate %s: it exposes "
                         "no tensor by index" % job["delegate"], protocol.EXIT_RUNTIME)
    spec = job[TENSORS_KEY]
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        raise JobFailure("job", "job key %r must be {\"file\": NAME}" % TENSORS_KEY, protocol.EXIT_BAD_JOB)
    model_path = in_job(job_dir, job["model"])
    tensors_path = in_job(job_dir, spec["file"])
    remove_stale([tensors_path])
    interpreter = make_interpreter(runtime, model_path, job["delegate"], job["num_threads"], True)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or not outputs:
        raise JobFailure("model_load", "%s has %d inputs and %d outputs; a tensor job needs one input"
                         % (model_path, len(inputs), len(outputs)), protocol.EXIT_RUNTIME)
    in_info, out_info = tensor_info(inputs[0]), tensor_info(outputs[0])
    clock["load_s"] = time.perf_counter() - t0
    check_input_shape(x, in_info, in_job(job_dir, job["inputs"]))
    batch, dynamic = choose_batch(in_info, 1, x.shape[0])
    prepare(interpreter, in_info, batch, dynamic)
    plan = execution_plan(interpreter)
    kept = kept_tensors(interpreter, plan)
    result.update(batch_size=1, n_samples=int(x.shape[0]), execution_plan=plan,
                  delegate_applied=applied_delegate(job["delegate"], plan))
    t0 = time.perf_counter()
    values, per_sample_s = _invoke_each(interpreter, x, job["preprocess"], in_info, batch, kept)
    clock["invoke_s"] = time.perf_counter() - t0
    clock["per_batch_s"] = per_sample_s
    sha = _save(tensors_path, values, bool(job.get("durable", True)))
    result[TENSORS_KEY] = {"file": spec["file"], "sha256": sha, "kept": kept}
    return values["t%d" % out_info["index"]], in_info, out_info, 1


def kept_tensors(interpreter, plan):
    """The tensors a tensor job reads back, in execution order (see the module docstring)."""
    details = dict((int(d["index"]), d) for d in interpreter.get_tensor_details())
    try:
        ops = interpreter._get_ops_details()  # experimental API, present since TF 2.5
    except Exception as exc:
        raise JobFailure("prepare", "this runtime lists no nodes (%s); a tensor job needs them" % exc,
                         protocol.EXIT_RUNTIME)
    on = dict((p["node"], p["on"]) for p in plan.get("placement", []))
    kept, seen = [], set()

    def keep(index, node, where):
        if index < 0 or index in seen or index not in details:
            return
        seen.add(index)
        scale, zero_point = details[index].get("quantization", (0.0, 0))
        kept.append({"index": index, "name": str(details[index]["name"]),
                     "dtype": np.dtype(details[index]["dtype"]).name, "scale": float(scale),
                     "zero_point": int(zero_point), "node": node, "on": where})

    for d in interpreter.get_input_details():
        keep(int(d["index"]), -1, "input")
    for op in ops:
        node = int(op["index"])
        if op["op_name"] == DELEGATE_OP_NAME:
            where = "delegate"
        elif on.get(node, "cpu") == "cpu":
            where = "cpu"
        else:
            continue  # computed inside a delegate's partition: not in the interpreter's memory
        for t in op["outputs"]:
            keep(int(t), node, where)
    return kept


def _invoke_each(interpreter, x, preprocess, in_info, batch, kept):
    """Invoke once per sample; returns ({"t<index>": [N, ...]}, per-sample invoke seconds)."""
    n = x.shape[0]
    gathered = dict((k["index"], []) for k in kept)
    per_sample_s = []
    start = 0
    try:
        for start in range(n):
            xb = to_model_input(x[start:start + 1], preprocess, in_info)
            if batch != 1:
                pad = np.zeros((batch,) + xb.shape[1:], dtype=xb.dtype)
                pad[:1] = xb
                xb = pad
            interpreter.set_tensor(in_info["index"], xb)
            t0 = time.perf_counter()
            interpreter.invoke()
            per_sample_s.append(time.perf_counter() - t0)
            for index, parts in gathered.items():
                value = interpreter.get_tensor(index)
                parts.append(value[:1].copy() if value.ndim and value.shape[0] == batch else value[None].copy())
    except Exception as exc:
        raise JobFailure("invoke", "invoke failed on sample %d: %s" % (start, exc), protocol.EXIT_RUNTIME)
    return dict(("t%d" % i, np.concatenate(parts)) for i, parts in gathered.items()), per_sample_s


def _save(path, values, durable):
    """Write tensors.npz (no pickles); returns the sha256 of its bytes."""
    buf = io.BytesIO()
    np.savez(buf, **values)
    data = buf.getvalue()
    atomic_write(path, data, durable)
    return hashlib.sha256(data).hexdigest()
