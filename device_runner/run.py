"""The qskew device runner: run one job folder through a TFLite interpreter and write the results.

Usage (on the device, or locally)::

    python /any/dir/device_runner/run.py JOB_DIR      # copied to a board as plain files
    python -m device_runner.run JOB_DIR                # from a checkout

It prints the handshake line (``protocol.handshake_line``) first, reads ``JOB_DIR/job.json``, loads
the model with the job's runtime and delegate, feeds the stored samples in batches and writes
``outputs.npy`` (raw values of output 0, [N, ...], in the output tensor's dtype) and ``result.json``
(``protocol.RESULT_FIELDS``; written last, via a rename; ``output.sha256`` is the sha256 of
outputs.npy's bytes, so the host trusts a pulled copy only if it matches). The file formats and
exit codes are documented in ``protocol.py``.

The delegate reported in ``delegate_applied`` is the one the interpreter really used: it is read
from the execution plan (delegated nodes appear as DELEGATE ops), because a runtime silently falls
back to its CPU kernels when a delegate cannot take a graph (int16x8 models have no XNNPACK path;
old runtimes do not delegate graphs with a dynamic batch dimension).

This file runs on boards: Python 3.7+, numpy 1.x or 2.x, the standard library and a TFLite runtime
only. It never imports ``harness``.
"""

import hashlib
import io
import json
import os
import platform
import sys
import time
import traceback

import numpy as np

if __package__:
    from device_runner import protocol
else:  # run as a plain script: protocol.py sits next to this file (first on sys.path)
    import protocol

# Samples converted to the model's input dtype at a time: conversion stays vectorised and out of
# the per-batch loop, while memory stays bounded on boards with little RAM.
CONVERT_CHUNK_BYTES = 32 * 1024 * 1024
# Integer storage up to this many bytes per value (uint8, int16...) is converted by table lookup.
LUT_MAX_ITEMSIZE = 2
# Op name under which a delegate's partition appears in the interpreter's node list.
DELEGATE_OP_NAME = "DELEGATE"


class JobFailure(Exception):
    """A failure the runner reports in result.json: which stage (kind), why, and the exit code."""

    def __init__(self, kind, message, exit_code):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.exit_code = exit_code


class Runtime(object):
    """The pieces of one TFLite Python runtime the runner needs."""

    def __init__(self, name, version, interpreter_cls, load_delegate, resolver_types):
        self.name = name
        self.version = version
        self.interpreter_cls = interpreter_cls
        self.load_delegate = load_delegate
        self.resolver_types = resolver_types  # OpResolverType enum, or None on very old runtimes


def _import_runtime(name):
    """Import one runtime by its protocol name; raises ImportError (or whatever it raises)."""
    if name == "ai_edge_litert":
        import ai_edge_litert
        from ai_edge_litert import interpreter as mod
        version = getattr(ai_edge_litert, "__version__", "unknown")
    elif name == "tflite_runtime":
        import tflite_runtime
        from tflite_runtime import interpreter as mod
        version = getattr(tflite_runtime, "__version__", "unknown")
    elif name == "tensorflow":
        import tensorflow as tf
        return Runtime(name, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate,
                       getattr(tf.lite.experimental, "OpResolverType", None))
    else:
        raise ImportError("unknown runtime %r" % name)
    return Runtime(name, version, mod.Interpreter, mod.load_delegate,
                   getattr(mod, "OpResolverType", None))


def load_runtime(preference):
    """The job's runtime: "auto" tries each of protocol.RUNTIMES in order."""
    names = protocol.RUNTIMES if preference == "auto" else (preference,)
    tried = []
    for name in names:
        try:
            return _import_runtime(name)
        except Exception as exc:  # a broken wheel raises more than ImportError
            tried.append("%s: %s" % (name, exc))
    raise JobFailure("job", "no TFLite runtime could be imported (%s)" % "; ".join(tried),
                     protocol.EXIT_RUNTIME)


def _resolver_for(runtime, kind):
    """The op resolver for a delegate kind, or None to keep the runtime's default."""
    if kind not in protocol.PYTHON_DELEGATES:
        raise JobFailure("delegate", "the Python runner cannot apply the %s delegate: TFLite's "
                         "Python runtimes ship no %s delegate; run it with runner = "
                         "\"benchmark_model\" in the device inventory" % (kind, kind),
                         protocol.EXIT_RUNTIME)
    # external delegates (and the Edge TPU's): builtin kernels without XNNPACK, so that every
    # DELEGATE node belongs to the library
    wanted = {"xnnpack": "AUTO", "reference": "BUILTIN_REF",
              "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
              "external": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
              "edgetpu": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}[kind]
    if runtime.resolver_types is None:
        if kind == "xnnpack":
            return None
        raise JobFailure("delegate", "runtime %s %s cannot select op resolvers; delegate %r needs it"
                         % (runtime.name, runtime.version, kind), protocol.EXIT_RUNTIME)
    return getattr(runtime.resolver_types, wanted)


def _load_external(runtime, library, options, kind="external"):
    what = "Edge TPU delegate library" if kind == "edgetpu" else "external delegate library"
    try:
        return runtime.load_delegate(library, options)
    except (OSError, ValueError, RuntimeError) as exc:  # a missing library is OSError (ctypes)
        raise JobFailure("delegate", "%s %s failed to load: %s" % (what, library, exc),
                         protocol.EXIT_RUNTIME)


def make_interpreter(runtime, model_path, delegate, num_threads):
    """An Interpreter for ``model_path`` with the job's delegate and thread count (not prepared)."""
    kind, library, options = protocol.parse_delegate(delegate)
    kwargs = {"model_path": model_path, "num_threads": num_threads}
    resolver = _resolver_for(runtime, kind)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver
    if kind in ("external", "edgetpu"):
        kwargs["experimental_delegates"] = [_load_external(runtime, library, options, kind)]
    if not os.path.isfile(model_path):
        raise JobFailure("model_load", "model file %s does not exist" % model_path,
                         protocol.EXIT_RUNTIME)
    try:
        return runtime.interpreter_cls(**kwargs)
    except Exception as exc:
        raise JobFailure("model_load", "%s could not load %s: %s" % (runtime.name, model_path, exc),
                         protocol.EXIT_RUNTIME)


def read_job(job_dir):
    """job.json as a dict, checked for the keys and values the runner relies on."""
    path = os.path.join(job_dir, protocol.JOB_FILE)
    try:
        with open(path) as f:
            job = json.load(f)
    except (OSError, ValueError) as exc:
        raise JobFailure("job", "cannot read %s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    if not isinstance(job, dict):
        raise JobFailure("job", "%s is not a JSON object" % path, protocol.EXIT_BAD_JOB)
    try:
        job_major = protocol.major(job.get("protocol"))
    except ValueError:
        job_major = None
    if job_major != protocol.major(protocol.PROTOCOL_VERSION):
        raise JobFailure("job", "job protocol %r is not supported by this runner (protocol %s)"
                         % (job.get("protocol"), protocol.PROTOCOL_VERSION), protocol.EXIT_PROTOCOL)
    return _check_job(job, path)


def _check_job(job, path):
    missing = [k for k in ("model", "inputs", "preprocess", "delegate") if k not in job]
    if missing:
        raise JobFailure("job", "%s lacks %s" % (path, ", ".join(missing)), protocol.EXIT_BAD_JOB)
    job.setdefault("num_threads", 1)
    job.setdefault("batch_size", 1)
    job.setdefault("runtime", "auto")
    job.setdefault("outputs", protocol.DEFAULT_OUTPUTS)
    job.setdefault("result", protocol.DEFAULT_RESULT)
    try:
        protocol.parse_delegate(job["delegate"])
        for key in ("num_threads", "batch_size"):
            if not isinstance(job[key], int) or job[key] < 1:
                raise ValueError("%s must be a positive integer, not %r" % (key, job[key]))
        if job["runtime"] != "auto" and job["runtime"] not in protocol.RUNTIMES:
            raise ValueError("unknown runtime %r; known: auto, %s"
                             % (job["runtime"], ", ".join(protocol.RUNTIMES)))
        float(job["preprocess"]["scale"]), float(job["preprocess"]["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise JobFailure("job", "%s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    return job


def load_inputs(path):
    """The stored samples [N, ...] in their storage dtype (never unpickled)."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise JobFailure("input", "cannot read inputs %s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    if x.ndim < 1 or x.shape[0] == 0:
        raise JobFailure("input", "inputs %s hold no samples (shape %s)" % (path, list(x.shape)),
                         protocol.EXIT_BAD_JOB)
    if x.dtype.kind not in "biuf":
        raise JobFailure("input", "inputs %s have non-numeric dtype %s" % (path, x.dtype),
                         protocol.EXIT_BAD_JOB)
    return x


def tensor_info(details):
    """dtype, shapes and per-tensor quantization of one input/output tensor."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    shape = [int(d) for d in details["shape"]]
    signature = details.get("shape_signature")
    return {
        "index": int(details["index"]), "dtype": np.dtype(details["dtype"]).name,
        "shape": shape,
        "shape_signature": [int(d) for d in signature] if signature is not None else list(shape),
        "scale": float(scale), "zero_point": int(zero_point),
    }


def single_io(interpreter, model_path):
    """The model's only input and output, or a clear error if it has several."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise JobFailure("model_load", "%s has %d inputs and %d outputs; the runner drives models with "
                         "exactly one of each" % (model_path, len(inputs), len(outputs)),
                         protocol.EXIT_RUNTIME)
    return tensor_info(inputs[0]), tensor_info(outputs[0])


def choose_batch(in_info, wanted, n_samples):
    """(batch size, dynamic?): the job's batch for a -1 batch dimension, else the fixed one."""
    signature = in_info["shape_signature"]
    if signature and signature[0] == -1:
        return max(1, min(int(wanted), n_samples)), True
    return (int(signature[0]) if signature else 1), False


def prepare(interpreter, in_info, batch, dynamic):
    """Resize (dynamic batch) and allocate; a runtime refusal becomes a "prepare" failure."""
    try:
        if dynamic:
            interpreter.resize_tensor_input(in_info["index"], [batch] + in_info["shape"][1:])
        interpreter.allocate_tensors()
    except Exception as exc:
        raise JobFailure("prepare", "allocate_tensors failed (batch %d): %s" % (batch, exc),
                         protocol.EXIT_RUNTIME)


def execution_plan(interpreter):
    """Which nodes a delegate took, read from the interpreter's node list after prepare.

    A delegate replaces a partition of the original nodes with one DELEGATE node whose inputs and
    outputs are the partition's boundary tensors; walking back from its outputs to that boundary
    finds the nodes it replaced.
    """
    try:
        ops = interpreter._get_ops_details()  # experimental API, present since TF 2.5
    except Exception:
        return {"available": False}
    producer = {}
    for op in ops:
        if op["op_name"] != DELEGATE_OP_NAME:
            for t in op["outputs"]:
                producer[int(t)] = int(op["index"])
    by_index = dict((int(op["index"]), op) for op in ops)
    delegated = set()
    partitions = [op for op in ops if op["op_name"] == DELEGATE_OP_NAME]
    for part in partitions:
        boundary = set(int(t) for t in part["inputs"])
        stack = [int(t) for t in part["outputs"]]
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if tensor < 0 or tensor in boundary or node is None or node in delegated:
                continue
            delegated.add(node)
            stack.extend(int(t) for t in by_index[node]["inputs"])
    original = [op for op in ops if op["op_name"] != DELEGATE_OP_NAME]
    return {
        "available": True, "source": "interpreter", "nodes": len(original),
        "delegated_nodes": len(delegated), "delegate_partitions": len(partitions),
        "ops": [op["op_name"] for op in original],
        "cpu_ops": [op["op_name"] for op in original if int(op["index"]) not in delegated],
        "placement": [{"node": int(op["index"]), "op": op["op_name"],
                       "on": "delegate" if int(op["index"]) in delegated else "cpu"}
                      for op in original],
    }


def applied_delegate(delegate, plan):
    """Name of the delegate that really ran: "none" when no node was delegated."""
    if not plan.get("available"):
        return "unknown"
    if plan["delegated_nodes"] == 0:
        return "none"
    kind, library, _ = protocol.parse_delegate(delegate)
    if kind == "xnnpack":
        return "xnnpack"
    if kind == "external":
        return "external:%s" % library
    if kind == "edgetpu":
        return "edgetpu"
    return "unknown"  # reference/builtin resolvers add no delegate; say so rather than guess


def to_model_input(stored, preprocess, in_info):
    """Stored samples -> the model's input dtype: float_x = stored*scale+offset, then quantize.

    Quantization follows TFLite's own QUANTIZE kernel: round half away from zero of x/scale, plus
    the zero point, clipped to the dtype's range. 8- and 16-bit integer storage (uint8 images...)
    goes through a lookup table of every storable value, computed with exactly the same float32
    arithmetic: one gather instead of eight passes over the data.
    """
    if stored.dtype.kind in "ui" and stored.dtype.itemsize <= LUT_MAX_ITEMSIZE:
        info = np.iinfo(stored.dtype)
        table = _convert(np.arange(info.min, info.max + 1, dtype=stored.dtype), preprocess, in_info)
        return table[stored.astype(np.intp) - info.min] if info.min else table[stored]
    return _convert(stored, preprocess, in_info)


def _convert(stored, preprocess, in_info):
    x = stored.astype(np.float32)
    x *= np.float32(preprocess["scale"])
    x += np.float32(preprocess["offset"])
    dtype = np.dtype(in_info["dtype"])
    if dtype.kind == "f":
        return x if dtype == np.float32 else x.astype(dtype)
    if in_info["scale"] == 0.0:
        raise JobFailure("input", "model input is %s without quantization parameters; cannot map "
                         "float samples to it" % dtype.name, protocol.EXIT_BAD_JOB)
    x /= np.float32(in_info["scale"])
    x = np.where(x >= 0, np.floor(x + np.float32(0.5)), np.ceil(x - np.float32(0.5)))
    x += np.float32(in_info["zero_point"])
    limits = np.iinfo(dtype)
    np.clip(x, limits.min, limits.max, out=x)
    return x.astype(dtype)


def check_input_shape(x, in_info, path):
    expected = in_info["shape"][1:]
    if list(x.shape[1:]) != expected:
        raise JobFailure("input", "inputs %s have sample shape %s; the model wants %s"
                         % (path, list(x.shape[1:]), expected), protocol.EXIT_BAD_JOB)


def _new_output(got, fed, n_samples):
    """The [N, ...] output array, made after the first invoke (graphs with a dynamic batch know
    their output shape only then)."""
    if got.ndim == 0 or got.shape[0] != fed:
        raise JobFailure("invoke", "output shape %s does not start with the batch size %d"
                         % (list(got.shape), fed), protocol.EXIT_RUNTIME)
    return np.empty((n_samples,) + got.shape[1:], dtype=got.dtype)


def infer(interpreter, x, preprocess, in_info, out_info, batch, dynamic,
          progress_interval_s=protocol.PROGRESS_INTERVAL_S):
    """Run every sample; returns (outputs [N, ...], per-batch invoke seconds).

    The loop body is what a bare interpreter loop does (fill the input, invoke, get_tensor) plus
    one copy into a preallocated array. A final partial batch resizes a dynamic batch dimension,
    or is padded (and its extra outputs dropped) when the batch is fixed.
    """
    n = x.shape[0]
    out_index = out_info["index"]
    invoke, get_tensor = interpreter.invoke, interpreter.get_tensor
    feed = (_direct_feeder(interpreter, x, preprocess, in_info)
            or _chunk_feeder(interpreter, x, preprocess, in_info, batch))
    clock = time.perf_counter
    out, per_batch_s, start = None, [], 0
    reported = clock()
    try:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            if m != batch and dynamic:
                prepare(interpreter, in_info, m, True)
            feed(start, m)
            t0 = clock()
            invoke()
            per_batch_s.append(clock() - t0)
            got = get_tensor(out_index)
            if out is None:
                out = _new_output(got, m if dynamic else batch, n)
            out[start:start + m] = got[:m]
            if t0 - reported >= progress_interval_s:  # a long job says it is alive
                print(protocol.progress_line(start + m, n), flush=True)
                reported = t0
    except JobFailure:
        raise
    except Exception as exc:
        raise JobFailure("invoke", "invoke failed on samples %d..%d: %s"
                         % (start, min(start + batch, n) - 1, exc), protocol.EXIT_RUNTIME)
    return out, per_batch_s


def _direct_feeder(interpreter, x, preprocess, in_info):
    """For 8/16-bit unsigned storage (uint8 images...): gather each batch through the conversion
    table straight into the input tensor's buffer -- no converted copy of the data set, no extra
    set_tensor copy. None when the storage dtype does not allow it."""
    if x.dtype.kind != "u" or x.dtype.itemsize > LUT_MAX_ITEMSIZE:
        return None
    table = _convert(np.arange(np.iinfo(x.dtype).max + 1, dtype=x.dtype), preprocess, in_info)
    in_index = in_info["index"]

    def feed(b0, m):
        view = interpreter.tensor(in_index)()  # dropped on return: invoke refuses live views
        if view.shape[0] == m:
            np.take(table, x[b0:b0 + m], out=view)
        else:
            view[:m] = table[x[b0:b0 + m]]
            view[m:] = 0
    return feed


def _chunk_feeder(interpreter, x, preprocess, in_info, batch):
    """Any other storage: convert CONVERT_CHUNK_BYTES of samples at a time, set_tensor per batch."""
    sample_bytes = max(1, int(np.prod(x.shape[1:])) * 4)
    chunk = max(batch, (CONVERT_CHUNK_BYTES // sample_bytes) // batch * batch)
    in_index, set_tensor = in_info["index"], interpreter.set_tensor
    held = {"at": None, "xs": None}

    def feed(b0, m):
        c0 = b0 // chunk * chunk
        if held["at"] != c0:
            held["at"], held["xs"] = c0, to_model_input(x[c0:c0 + chunk], preprocess, in_info)
        xb = held["xs"][b0 - c0:b0 - c0 + m]
        if m != batch and interpreter.get_input_details()[0]["shape"][0] != m:
            pad = np.zeros((batch,) + xb.shape[1:], dtype=xb.dtype)
            pad[:m] = xb
            xb = pad
        set_tensor(in_index, xb)
    return feed


def _atomic_write(path, write):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def save_outputs(path, out):
    """Write outputs.npy; returns the sha256 of its bytes (the host checks its pulled copy)."""
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    data = buf.getvalue()
    _atomic_write(path, lambda f: f.write(data))
    return hashlib.sha256(data).hexdigest()


def write_result(path, result):
    data = (protocol.dumps(result) + "\n").encode("utf-8")
    _atomic_write(path, lambda f: f.write(data))


def _in_job(job_dir, path):
    return os.path.join(job_dir, path)  # absolute paths stay as they are


def _remove_stale(paths):
    """A rerun in the same job folder must never leave an earlier run's files to be read."""
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


def run_job(job_dir, job, result, clock):
    """Run a checked job, filling ``result``; raises JobFailure on any failure."""
    model_path, inputs_path = _in_job(job_dir, job["model"]), _in_job(job_dir, job["inputs"])
    x = load_inputs(inputs_path)
    t0 = time.perf_counter()
    runtime = load_runtime(job["runtime"])
    result.update(runtime=runtime.name, runtime_version=str(runtime.version))
    interpreter = make_interpreter(runtime, model_path, job["delegate"], job["num_threads"])
    in_info, out_info = single_io(interpreter, model_path)
    clock["load_s"] = time.perf_counter() - t0
    check_input_shape(x, in_info, inputs_path)
    batch, dynamic = choose_batch(in_info, job["batch_size"], x.shape[0])
    t0 = time.perf_counter()
    prepare(interpreter, in_info, batch, dynamic)
    clock["prepare_s"] = time.perf_counter() - t0
    plan = execution_plan(interpreter)
    result.update(batch_size=batch, n_samples=int(x.shape[0]), execution_plan=plan,
                  delegate_applied=applied_delegate(job["delegate"], plan))
    print("prepared: %s %s, batch %d, delegate applied: %s"
          % (runtime.name, runtime.version, batch, result["delegate_applied"]))
    sys.stdout.flush()
    t0 = time.perf_counter()
    out, per_batch_s = infer(interpreter, x, job["preprocess"], in_info, out_info, batch, dynamic,
                             float(job.get("progress_interval_s", protocol.PROGRESS_INTERVAL_S)))
    clock["invoke_s"] = time.perf_counter() - t0
    clock["per_batch_s"] = per_batch_s
    outputs_sha256 = save_outputs(_in_job(job_dir, job["outputs"]), out)
    result["input"] = {"dtype": in_info["dtype"], "shape": [batch] + in_info["shape"][1:],
                       "shape_signature": in_info["shape_signature"],
                       "scale": in_info["scale"], "zero_point": in_info["zero_point"]}
    result["output"] = {"file": job["outputs"], "dtype": out.dtype.name, "shape": list(out.shape),
                        "scale": out_info["scale"], "zero_point": out_info["zero_point"],
                        "sha256": outputs_sha256}


def new_result():
    """A result with every protocol field present, for the runner to fill in."""
    result = dict((key, None) for key in protocol.RESULT_FIELDS)
    result.update(protocol=protocol.PROTOCOL_VERSION, status="error", python=platform.python_version(),
                  numpy=np.__version__, platform=platform.platform(), delegate_applied="none",
                  execution_plan={"available": False}, timings={})
    return result


def _timings(clock):
    timings = dict((k, round(v, 6)) for k, v in clock.items()
                   if k not in ("start", "per_batch_s"))
    timings["per_batch_s"] = [round(v, 7) for v in clock.get("per_batch_s", [])]
    timings["total_s"] = round(time.perf_counter() - clock["start"], 6)
    return timings


def main(argv=None):
    """Run the job folder named on the command line; returns the process exit code."""
    clock = {"start": time.perf_counter()}
    print(protocol.handshake_line(platform.python_version(), np.__version__))
    sys.stdout.flush()
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: run.py JOB_DIR\n")
        return protocol.EXIT_BAD_JOB
    job_dir = argv[0]
    result = new_result()
    result_path = _in_job(job_dir, protocol.DEFAULT_RESULT)
    code = protocol.EXIT_OK
    try:
        job = read_job(job_dir)
        result_path = _in_job(job_dir, job["result"])
        _remove_stale([result_path, _in_job(job_dir, job["outputs"])])
        result.update(delegate_requested=job["delegate"], num_threads=job["num_threads"])
        run_job(job_dir, job, result, clock)
        result.update(status="ok")
    except JobFailure as exc:
        result.update(error=exc.message, error_kind=exc.kind)
        code = exc.exit_code
        sys.stderr.write("qskew runner: %s error: %s\n" % (exc.kind, exc.message))
    except Exception as exc:  # a runner bug: keep the traceback, still leave a result behind
        traceback.print_exc()
        result.update(error="runner crashed: %r" % (exc,), error_kind="job")
        code = 1
    result["timings"] = _timings(clock)
    try:
        write_result(result_path, result)
    except OSError as exc:
        sys.stderr.write("qskew runner: cannot write %s: %s\n" % (result_path, exc))
        return code or protocol.EXIT_BAD_JOB
    return code


if __name__ == "__main__":
    sys.exit(main())
