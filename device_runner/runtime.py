"""The TFLite side of the runner: import a runtime, make the interpreter with the job's delegate,
describe its input and output, prepare it, and read back which nodes the delegate took.

The delegate reported in ``delegate_applied`` is the one the interpreter really used: it is read
from the execution plan (delegated nodes appear as DELEGATE ops), because a runtime silently falls
back to its CPU kernels when a delegate cannot take a graph (int16x8 models have no XNNPACK path;
old runtimes do not delegate graphs with a dynamic batch dimension).
"""

import os

import numpy as np

if __package__:
    from device_runner import protocol
    from device_runner.jobdir import JobFailure
else:  # run as a plain script on a board: the sibling files are top-level modules
    import protocol
    from jobdir import JobFailure

# Op name under which a delegate's partition appears in the interpreter's node list.
DELEGATE_OP_NAME = "DELEGATE"


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


def make_interpreter(runtime, model_path, delegate, num_threads, preserve_all_tensors=False):
    """An Interpreter for ``model_path`` with the job's delegate and thread count (not prepared);
    ``preserve_all_tensors`` keeps every intermediate tensor readable after invoke (tensor jobs)."""
    kind, library, options = protocol.parse_delegate(delegate)
    kwargs = {"model_path": model_path, "num_threads": num_threads}
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
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
