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
that sample alone, whatever a RESHAPE does to the batch. On LiteRT's CompiledModel (gpu, gpu-fp32,
cpu-compiled) nothing is visible but the signature's outputs: the host sends a copy whose signature
lists every op output (``qskew_t<index>``), and each comes back as a delegate output.
"""

import hashlib
import io
import time

import numpy as np

if __package__:
    from device_runner import compiled, protocol
    from device_runner.inference import to_model_input
    from device_runner.jobdir import JobFailure, atomic_write, check_input_shape, in_job, remove_stale
    from device_runner.runtime import (DELEGATE_OP_NAME, applied_delegate, choose_batch, execution_plan,
                                       make_interpreter, prepare, tensor_info)
else:  # run as a plain script on a board: the sibling files are top-level modules
    import compiled
    import protocol
    from inference import to_model_input
    from jobdir import JobFailure, atomic_write, check_input_shape, in_job, remove_stale
    from runtime import (DELEGATE_OP_NAME, applied_delegate, choose_batch, execution_plan, make_interpreter,
                         prepare, tensor_info)

TENSORS_KEY = "tensors"  # the job.json key that asks for a tensor job


def run_tensor_job(job_dir, job, result, clock, runtime, x, t0):
    """Run a tensor job; fills result["tensors"] and returns (output 0 [N, ...], in_info, out_info,
    batch) for the runner's usual outputs.npy."""
    spec = job[TENSORS_KEY]
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        raise JobFailure("job", "job key %r must be {\"file\": NAME}" % TENSORS_KEY, protocol.EXIT_BAD_JOB)
    model_path = in_job(job_dir, job["model"])
    tensors_path = in_job(job_dir, spec["file"])
    remove_stale([tensors_path])
    if job["delegate"] in protocol.COMPILED_DELEGATES:
        values, in_info, out_info = run_compiled_tensors(job, result, clock, runtime, x, t0, model_path,
                                                         in_job(job_dir, job["inputs"]))
        sha = _save(tensors_path, values, bool(job.get("durable", True)))
        result[TENSORS_KEY] = {"file": spec["file"], "sha256": sha, "kept": result.pop("_kept")}
        return values["t%d" % out_info["index"]], in_info, out_info, 1
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


def run_compiled_tensors(job, result, clock, runtime, x, t0, model_path, inputs_path):
    """A tensor job on LiteRT's CompiledModel (gpu, gpu-fp32, cpu-compiled): the host sends a copy
    of the model whose every op output is a signature output, so the accelerator hands each back.
    Returns ({"t<index>": [N, ...]}, in_info, out_info); the kept list goes to result["_kept"]."""
    kind = job["delegate"]
    if runtime.name != "ai_edge_litert":
        raise JobFailure("delegate", "delegate %s needs ai_edge_litert's CompiledModel; the job's runtime "
                         "is %s %s" % (kind, runtime.name, runtime.version), protocol.EXIT_RUNTIME)
    probe = make_interpreter(runtime, model_path, "builtin", 1)  # names and quantization by tensor index
    in_info, out_info = tensor_info(probe.get_input_details()[0]), tensor_info(probe.get_output_details()[0])
    check_input_shape(x, in_info, inputs_path)
    model, (ins, outs), log_text = compiled.open_compiled(model_path, kind, job["num_threads"])
    clock["load_s"] = time.perf_counter() - t0
    signature = list(model.get_signature_list())[0]
    names = model.get_signature_list()[signature]["outputs"]
    details = model.get_output_tensor_details(signature)
    batch = int(list(model.get_input_tensor_details(signature).values())[0]["shape"][0])
    report = compiled.runtime_report(kind, log_text, model.is_fully_accelerated(), in_info)
    partial = compiled.check_placement(kind, report, log_text, bool(job.get("allow_partial")))
    applied = compiled.judge(kind, report, {}, True, partial)  # no CPU comparison here: says so
    result.update(batch_size=1, n_samples=int(x.shape[0]), delegate_applied=applied,
                  execution_plan=compiled.compiled_plan(kind, report, log_text, applied, partial))
    tensor_details = dict((int(d["index"]), d) for d in probe.get_tensor_details())
    kept = [_entry(tensor_details[in_info["index"]], -1, "input")]
    kept += [_entry(tensor_details[int(details[n]["index"])], -1, "delegate") for n in names]
    parts = dict((k["index"], []) for k in kept)
    per_sample_s, start = [], 0
    try:
        for start in range(x.shape[0]):
            xb = to_model_input(x[start:start + 1], preprocess=job["preprocess"], in_info=in_info)
            parts[in_info["index"]].append(xb.copy())
            if batch != 1:
                xb = np.concatenate([xb, np.zeros((batch - 1,) + xb.shape[1:], dtype=xb.dtype)])
            ins[0].write(np.ascontiguousarray(xb))
            t1 = time.perf_counter()
            model.run_by_index(0, ins, outs)
            per_sample_s.append(time.perf_counter() - t1)
            for name, buf in zip(names, outs):
                d = details[name]
                shape = [int(v) for v in d["shape"]]
                value = buf.read(int(np.prod(shape)), np.dtype(d["dtype"])).reshape(shape)
                parts[int(d["index"])].append(value[:1].copy() if value.ndim and shape[0] == batch else value[None])
    except Exception as exc:
        raise JobFailure("invoke", "CompiledModel run failed on sample %d: %s" % (start, exc), protocol.EXIT_RUNTIME)
    clock["per_batch_s"] = per_sample_s
    result["_kept"] = kept
    return dict(("t%d" % i, np.concatenate(p)) for i, p in parts.items()), in_info, out_info


def _entry(details, node, where):
    scale, zero_point = details.get("quantization", (0.0, 0))
    return {"index": int(details["index"]), "name": str(details["name"]),
            "dtype": np.dtype(details["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point),
            "node": node, "on": where}


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
        kept.append(_entry(details[index], node, where))

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
