"""qskew's STAND-IN for TFLite's ``benchmark_model`` binary -- this is NOT TFLite's binary.

Devices without Python (most phones) run models with TFLite's own ``benchmark_model`` tool, and
qskew's ``benchmark_model`` runner kind (``harness/benchmark_model.py``) drives that binary. No real
binary runs in qskew's own tests, so this file plays it: it implements the part of the binary's
command-line contract qskew relies on, on a TFLite *Python* runtime (ai_edge_litert, else
tflite_runtime), with the binary's behaviour where qskew depends on it
(``tflite/tools/benchmark/benchmark_tflite_model.cc`` and ``benchmark_model.cc``)::

    --graph=<model.tflite>                       required
    --input_layer=<name>[,<name>...]             with --input_layer_shape (one shape per input, ':'
    --input_layer_shape=<d0,d1,...>[:<...>]      between inputs, no -1); the input is resized to it
    --input_layer_value_files=<name>:<file>[,...]   ',' between items; a ':' inside a name or path
                                                 is written '::'. A file holds the tensor's raw
                                                 bytes; its size must equal the tensor's bytes, else
                                                 "FATAL: The size of ..." and the binary aborts
                                                 (exit 134 here, what a shell shows for SIGABRT)
    --output_filepath=<file>                     after the last run: the raw bytes of every output
                                                 tensor, concatenated in output order, no header
    --num_runs --min_secs --max_secs --warmup_runs --warmup_min_secs   the binary's run loop
    --num_threads=<n>                            -1 (default): the runtime's own choice
    --use_xnnpack=true|false                     true: the default resolver (XNNPACK applied);
                                                 false: built-in kernels, no default delegate;
                                                 unset: the default resolver
    --external_delegate_path=<.so> --external_delegate_options='k1:v1;k2:v2'   load_delegate; a
                                                 library that will not load is the binary's INFO
                                                 "Unable to load external delegate from : <path>",
                                                 then the graph on the CPU and exit 0
    --use_gpu [--gpu_precision_loss_allowed] / --use_nnapi [--nnapi_accelerator_name] /
    --use_hexagon =true                          "delegate unavailable": the Python runtimes ship
                                                 none of these, so the stand-in does what the real
                                                 binary does where it cannot create one: the
                                                 provider's WARN line, the graph on the CPU, exit 0
                                                 (qskew must catch that silent fallback)

Flags are ``--name=value`` (booleans true/false or 1/0); an unknown flag is warned about and
ignored, as the binary does. Logging follows the binary: "INFO: " and "WARN: " lines on stdout,
"ERROR: " and "FATAL: " lines on stderr; the delegate registrar's lines ("Explicitly applied
XNNPACK delegate, and the model graph will be completely executed by the delegate.") and the
timing line ("Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ...,
Inference (avg): ...") use the binary's wording. The first line of every run, and ``--help``, say
that this is the stand-in and which runtime is under it.

Runs on boards: Python 3.7+, numpy 1.x or 2.x, the standard library and a TFLite Python runtime.
Like the binary it plays, it is one self-contained file pushed on its own: it imports nothing from
qskew, which is why its walk over the interpreter's DELEGATE nodes (:func:`delegate_kernels`)
repeats the one in ``runtime.execution_plan`` instead of importing it.
"""

import os
import sys
import time

import numpy as np

BANNER = "qskew benchmark_model stand-in (not TFLite's binary)"
RUNTIMES = ("ai_edge_litert", "tflite_runtime")  # tried in this order
EXIT_OK = 0
EXIT_FAILURE = 1   # the binary's EXIT_FAILURE after "Benchmarking failed."
EXIT_FATAL = 134   # the binary abort()s after a FATAL line: a shell reports 128 + SIGABRT
DELEGATE_OP_NAME = "DELEGATE"  # how a delegate's partition shows in the interpreter's node list
RANDOM_SEED = 0    # inputs without a value file get random data, reproducibly

# flag -> (type, default); None: unset (the binary tells "unset" from "false" for use_xnnpack)
FLAGS = {
    "graph": (str, ""), "input_layer": (str, ""), "input_layer_shape": (str, ""),
    "input_layer_value_files": (str, ""), "output_filepath": (str, ""),
    "num_runs": (int, 50), "min_secs": (float, 1.0), "max_secs": (float, 150.0),
    "warmup_runs": (int, 1), "warmup_min_secs": (float, 0.5), "num_threads": (int, -1),
    "use_xnnpack": (bool, None), "use_gpu": (bool, False), "use_nnapi": (bool, False),
    "nnapi_accelerator_name": (str, ""), "use_hexagon": (bool, False),
    "gpu_precision_loss_allowed": (bool, True),
    "external_delegate_path": (str, ""), "external_delegate_options": (str, ""), "help": (bool, False),
}
# How the binary's LogParams names each flag it logs ("INFO: Input shapes: [64,8,8,1]"): only
# flags given on the command line are logged (--graph always), in this order.
PARAM_NAMES = (
    ("num_runs", "Min num runs"), ("min_secs", "Min runs duration (seconds)"),
    ("max_secs", "Max runs duration (seconds)"), ("num_threads", "Num threads"),
    ("warmup_runs", "Min warmup runs"), ("warmup_min_secs", "Min warmup runs duration (seconds)"),
    ("graph", "Graph"), ("input_layer", "Input layers"), ("input_layer_shape", "Input shapes"),
    ("input_layer_value_files", "Input value files"),
    ("output_filepath", "File path to export outputs layer to"), ("use_gpu", "Use gpu"),
    ("gpu_precision_loss_allowed", "Allow lower precision in gpu"),
    ("use_hexagon", "Use Hexagon"), ("use_nnapi", "Use NNAPI"),
    ("nnapi_accelerator_name", "NNAPI accelerator name"), ("use_xnnpack", "Use xnnpack"),
    ("external_delegate_path", "External delegate path"),
    ("external_delegate_options", "External delegate options"),
)
# delegates of the binary that no TFLite Python runtime has: (flag, the provider's warning when it
# cannot create the delegate -- gpu/nnapi/hexagon_delegate_provider.cc, word for word)
MISSING_DELEGATES = (
    ("use_gpu", "GPU acceleration is unsupported on this platform."),
    ("use_nnapi", "NNAPI acceleration is unsupported on this platform."),
    ("use_hexagon", "Could not create Hexagon delegate: platform may not support delegate or "
                    "required libraries are missing"))


class Stop(Exception):
    """End the run: the message is already logged; ``code`` is the exit status."""

    def __init__(self, code):
        Exception.__init__(self, code)
        self.code = code


def say(severity, message):
    """One log line in the binary's format (INFO/WARN on stdout, ERROR/FATAL on stderr)."""
    stream = sys.stdout if severity in ("INFO", "WARN") else sys.stderr
    stream.write("%s: %s\n" % (severity, message))
    stream.flush()


def fail(message):
    say("ERROR", message)
    say("ERROR", "Benchmarking failed.")
    raise Stop(EXIT_FAILURE)


def fatal(message):
    say("FATAL", message)
    raise Stop(EXIT_FATAL)


def usage():
    lines = ["usage: benchmark_model_standin.py --graph=<model.tflite> [--flag=value ...]",
             "", BANNER + ": plays TFLite's benchmark_model on a TFLite Python runtime "
             "(%s); it is not TFLite's binary. Flags:" % ", ".join(RUNTIMES)]
    for name in sorted(FLAGS):
        kind, default = FLAGS[name]
        lines.append("  --%s=<%s>  (default: %s)" % (name, kind.__name__,
                                                    "unset" if default is None else repr(default)))
    return "\n".join(lines)


def _value(name, kind, text):
    if kind is bool:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError("Failed to parse bool flag --%s=%s (use true or false)" % (name, text))
    try:
        return kind(text)
    except ValueError:
        raise ValueError("Failed to parse %s flag --%s=%s" % (kind.__name__, name, text))


def parse_flags(argv):
    """(values, explicitly set names, unconsumed arguments) for ``--name=value`` arguments."""
    values = dict((name, default) for name, (_, default) in FLAGS.items())
    order, unconsumed = [], []
    for arg in argv:
        name, sep, text = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not sep and FLAGS.get(name, (None,))[0] is bool:
            sep, text = "=", "true"  # a bare --use_xnnpack / --help means true
        if not sep or name not in FLAGS:
            unconsumed.append(arg)
            continue
        values[name] = _value(name, FLAGS[name][0], text)
        order.append(name)
    return values, order, unconsumed


def split_name_and_file(item):
    """"name:file" -> (name, file), '::' standing for ':' (the binary's own splitting rule)."""
    delim, i = -1, 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delim == -1:
                delim = i
            else:
                raise ValueError("%s contains more than one delimiter." % item)
        i += 1
    if delim == -1:
        raise ValueError("%s doesn't contain any delimiter." % item)
    return item[:delim].replace("::", ":"), item[delim + 1:].replace("::", ":")


def input_layers(flags):
    """[{"name", "shape", "file"}] from --input_layer/_shape/_value_files (empty: random data)."""
    names = [n for n in flags["input_layer"].split(",")] if flags["input_layer"] else []
    shapes = flags["input_layer_shape"].split(":") if flags["input_layer_shape"] else []
    if len(names) != len(shapes):
        fail("The number of items in --input_layer_shape (%s, with %d items) must match the number "
             "of items in --input_layer (%s, with %d items)." % (flags["input_layer_shape"],
                                                                len(shapes), flags["input_layer"], len(names)))
    layers = []
    for name, text in zip(names, shapes):
        try:
            shape = [int(d) for d in text.split(",")]
        except ValueError:
            fatal("Incorrect size string specified: %s" % text)
        if -1 in shape:
            fail("Any unknown sizes in the shapes (-1's) must be replaced with the size you want "
                 "to benchmark with.")
        layers.append({"name": name, "shape": shape, "file": ""})
    items = flags["input_layer_value_files"].split(",") if flags["input_layer_value_files"] else []
    for item in items:
        try:
            name, path = split_name_and_file(item)
        except ValueError as exc:
            fail("Wrong input value file item specified: %s (%s)" % (item, exc))
        hits = [layer for layer in layers if layer["name"] == name]
        if not hits:
            fatal("Cannot find the corresponding input_layer name(%s) in --input_layer as %s"
                  % (name, flags["input_layer"]))
        hits[0]["file"] = path
    return layers


class Runtime(object):
    def __init__(self, name, version, module):
        self.name, self.version, self.module = name, version, module


def load_runtime():
    tried = []
    for name in RUNTIMES:
        try:
            if name == "ai_edge_litert":
                import ai_edge_litert as package
                from ai_edge_litert import interpreter as module
            else:
                import tflite_runtime as package
                from tflite_runtime import interpreter as module
            return Runtime(name, getattr(package, "__version__", "unknown"), module)
        except Exception as exc:  # a broken wheel raises more than ImportError
            tried.append("%s: %s" % (name, exc))
    fail("%s: no TFLite Python runtime could be imported (%s)" % (BANNER, "; ".join(tried)))


def _resolver(runtime, use_xnnpack):
    """--use_xnnpack=false: built-in kernels without default delegates; else the default resolver."""
    types = getattr(runtime.module, "OpResolverType", None)
    if use_xnnpack is False:
        if types is None:
            fail("%s: %s %s cannot select op resolvers, so --use_xnnpack=false cannot be honoured"
                 % (BANNER, runtime.name, runtime.version))
        return types.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return None if types is None else types.AUTO


def external_options(text):
    """'k1:v1;k2:v2' -> dict; like the binary, an item that is not exactly key:value is dropped."""
    options = {}
    for item in text.split(";") if text else []:
        parts = item.split(":")
        if len(parts) == 2:
            options[parts[0]] = parts[1]
    return options


def make_interpreter(runtime, flags):
    """(interpreter, whether the external delegate loaded): the interpreter with the flags'
    resolver, threads and external delegate, not allocated."""
    kwargs = {"model_path": flags["graph"],
              "num_threads": flags["num_threads"] if flags["num_threads"] >= 1 else None}
    resolver = _resolver(runtime, flags["use_xnnpack"])
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver
    if flags["external_delegate_path"]:
        path = flags["external_delegate_path"]
        try:
            delegate = runtime.module.load_delegate(path, external_options(flags["external_delegate_options"]))
        except Exception:  # a library that will not load is OSError/ValueError (ctypes)
            # the binary's words (delegates/external/external_delegate.cc): an INFO line, a null
            # delegate that the provider skips, and the graph on the CPU -- exit 0 (silent fallback)
            say("INFO", "Unable to load external delegate from : %s" % path)
            delegate = None
        if delegate is not None:
            kwargs["experimental_delegates"] = [delegate]
    else:
        delegate = None
    if not os.path.isfile(flags["graph"]):
        fail("Failed to load model %s (no such file)" % flags["graph"])
    try:
        interpreter = runtime.module.Interpreter(**kwargs)
    except Exception as exc:
        fail("Failed to load model %s: %s" % (flags["graph"], exc))
    say("INFO", "Loaded model %s" % flags["graph"])
    return interpreter, delegate is not None


def delegate_kernels(interpreter):
    """(delegate kernels, execution plan size) from the interpreter's node list."""
    try:
        ops = interpreter._get_ops_details()  # experimental API, present since TF 2.5
    except Exception:
        return 0, 0
    producer = {}
    for op in ops:
        if op["op_name"] != DELEGATE_OP_NAME:
            for t in op["outputs"]:
                producer[int(t)] = int(op["index"])
    by_index = dict((int(op["index"]), op) for op in ops)
    partitions = [op for op in ops if op["op_name"] == DELEGATE_OP_NAME]
    replaced = set()
    for part in partitions:  # walk back from a partition's outputs to its inputs
        boundary = set(int(t) for t in part["inputs"])
        stack = [int(t) for t in part["outputs"]]
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if tensor < 0 or tensor in boundary or node is None or node in replaced:
                continue
            replaced.add(node)
            stack.extend(int(t) for t in by_index[node]["inputs"])
    return len(partitions), len(ops) - len(replaced)  # the plan: partitions + nodes left on the CPU


def log_delegate(name, kernels, plan_size):
    """The delegate registrar's statement after applying one delegate (the binary's wording)."""
    if kernels == 1 and plan_size == 1:
        say("INFO", "Explicitly applied %s delegate, and the model graph will be completely "
                    "executed by the delegate." % name)
    elif kernels > 0:
        say("INFO", "Explicitly applied %s delegate, and the model graph will be partially "
                    "executed by the delegate w/ %d delegate kernels." % (name, kernels))
    else:
        say("INFO", "Though %s delegate is explicitly applied, the model graph will not be "
                    "executed by the delegate." % name)


def resize_inputs(interpreter, layers):
    """Check --input_layer against the model's inputs and resize those whose shape differs."""
    details = interpreter.get_input_details()
    if layers and len(layers) != len(details):
        fatal("Inputs mismatch: Model inputs #:%d expected: %d" % (len(layers), len(details)))
    for layer, d in zip(layers, details):
        if layer["name"] != d["name"]:
            say("WARN", "Tensor # %d is named %s but flags call it %s" % (d["index"], d["name"], layer["name"]))
        if len(layer["shape"]) != len(d["shape"]):
            fail("Input tensor #%d should have %d dimensions!" % (d["index"], len(d["shape"])))
        if list(layer["shape"]) != [int(x) for x in d["shape"]]:
            try:
                interpreter.resize_tensor_input(d["index"], layer["shape"])
            except Exception as exc:
                fail("Failed to resize input tensor #%d to %s: %s" % (d["index"], layer["shape"], exc))


def init(runtime, flags, layers, order):
    """Load, resize, apply delegates and allocate; logs the registrar's lines. Returns the interpreter."""
    interpreter, external = make_interpreter(runtime, flags)
    resize_inputs(interpreter, layers)
    applied = [("EXTERNAL", "external_delegate_path"), ("XNNPACK", "use_xnnpack")]
    # a delegate that could not be created is skipped: no registrar line for it
    applied = [(n, f) for n, f in applied if (flags[f] is True if f == "use_xnnpack" else external)]
    applied.sort(key=lambda nf: order.index(nf[1]))  # the binary applies them in flag order
    if len(applied) >= 2:
        say("INFO", "Going to apply %d delegates one after another." % len(applied))
    before, _ = delegate_kernels(interpreter)  # external delegates are applied at construction
    try:
        interpreter.allocate_tensors()  # ...the default XNNPACK delegate here
    except Exception as exc:
        fail("Failed to allocate tensors! (%s)" % exc)
    after, plan_size = delegate_kernels(interpreter)
    for name, _ in applied:
        log_delegate(name, before if name == "EXTERNAL" else after - before, plan_size)
    return interpreter


def input_data(interpreter, layers):
    """Raw bytes for every input, from its value file (size checked) or random."""
    rng = np.random.RandomState(RANDOM_SEED)
    data = []
    for i, d in enumerate(interpreter.get_input_details()):
        dtype, shape = np.dtype(d["dtype"]), [int(x) for x in d["shape"]]
        nbytes = int(np.prod(shape)) * dtype.itemsize
        path = layers[i]["file"] if layers else ""
        if not path:
            data.append(_random(rng, dtype, shape))
            continue
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except (OSError, IOError):
            fatal("Failed to read the input_layer_value_file:%s" % path)
        if len(raw) != nbytes:
            fatal("The size of %s is %d bytes. It should be %d bytes." % (path, len(raw), nbytes))
        data.append(np.frombuffer(raw, dtype=dtype).reshape(shape))
    return data


def _random(rng, dtype, shape):
    if dtype.kind == "f":
        return rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.randint(max(info.min, -128), min(info.max, 255) + 1, size=shape).astype(dtype)
    fail("%s: input dtype %s is not supported" % (BANNER, dtype))


def now_us():
    return int(time.time() * 1e6)


def stat_line(times):
    """The run statistics line the binary prints after each loop (count, first, curr...)."""
    if not times:
        return "count=0"
    if min(times) == max(times):
        return "count=%d curr=%d%s" % (len(times), times[-1], "(all same)" if len(times) > 1 else "")
    avg = float(sum(times)) / len(times)
    std = int((sum((t - avg) ** 2 for t in times) / len(times)) ** 0.5)
    return "count=%d first=%d curr=%d min=%d max=%d avg=%g std=%d" % (
        len(times), times[0], times[-1], min(times), max(times), avg, std)


def run_loop(interpreter, data, min_runs, min_secs, max_secs):
    """The binary's loop: at least ``min_runs`` runs and ``min_secs``, stop after ``max_secs``."""
    say("INFO", "Running benchmark for at least %d iterations and at least %g seconds but terminate "
                "if exceeding %g seconds." % (min_runs, min_secs, max_secs))
    details = interpreter.get_input_details()
    now = now_us()
    min_finish, max_finish = now + int(min_secs * 1e6), now + int(max_secs * 1e6)
    times, run = [], 0
    while (run < min_runs or now < min_finish) and now <= max_finish:
        for d, values in zip(details, data):
            interpreter.set_tensor(d["index"], values)
        start = now_us()
        try:
            interpreter.invoke()
        except Exception as exc:
            fail("Failed to invoke: %s" % exc)
        times.append(now_us() - start)
        now = now_us()
        run += 1
    say("INFO", stat_line(times))
    return times


def save_outputs(interpreter, path):
    """Every output tensor's raw bytes, in output order, no header (silently skipped if unopenable)."""
    try:
        f = open(path, "wb")
    except (OSError, IOError):
        return
    with f:
        for d in interpreter.get_output_details():
            f.write(np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes())


def log_params(flags, order):
    """The binary's LogParams: each flag given on the command line as "<description>: [value]"."""
    say("INFO", "Log parameter values verbosely: [0]")
    for name, description in PARAM_NAMES:
        if name in order or name == "graph":
            value = flags[name]
            text = ("1" if value else "0") if isinstance(value, bool) else (
                "%g" % value if isinstance(value, float) else str(value))
            say("INFO", "%s: [%s]" % (description, text))


def warn_missing_delegates(flags):
    """The real binary's silent fallback: a delegate it cannot create is a WARN, then the CPU."""
    for flag, warning in MISSING_DELEGATES:
        if flags[flag]:
            say("WARN", warning)
    if flags["nnapi_accelerator_name"] and not flags["use_nnapi"]:
        say("WARN", "`--use_nnapi=true` must be set for the provided NNAPI accelerator (%s) to be used."
            % flags["nnapi_accelerator_name"])


def benchmark(flags, order):
    """The binary's Run(): validate, init, prepare inputs, warm up, run, report and save."""
    if not flags["graph"]:
        fail("Please specify the name of your TF Lite input file with --graph")
    layers = input_layers(flags)
    log_params(flags, order)
    warn_missing_delegates(flags)
    runtime = load_runtime()
    say("INFO", "%s: runtime %s %s" % (BANNER, runtime.name, runtime.version))
    start = now_us()
    interpreter = init(runtime, flags, layers, order)
    init_us = now_us() - start
    say("INFO", "The input model file size (MB): %g" % (os.path.getsize(flags["graph"]) / 1e6))
    say("INFO", "Initialized session in %gms." % (init_us / 1e3))
    data = input_data(interpreter, layers)
    warmup = run_loop(interpreter, data, flags["warmup_runs"], flags["warmup_min_secs"], flags["max_secs"])
    runs = run_loop(interpreter, data, flags["num_runs"], flags["min_secs"], flags["max_secs"])
    say("INFO", "Inference timings in us: Init: %d, First inference: %d, Warmup (avg): %s, "
                "Inference (avg): %s" % (init_us, warmup[0] if warmup else 0, _avg(warmup), _avg(runs)))
    if flags["output_filepath"]:
        save_outputs(interpreter, flags["output_filepath"])


def _avg(times):
    """The binary prints a double with C++ stream defaults (6 significant digits); 0 when empty."""
    return "%g" % (float(sum(times)) / len(times) if times else 0.0)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    say("INFO", "%s, Python %s, numpy %s" % (BANNER, sys.version.split()[0], np.__version__))
    say("INFO", "STARTING!")
    try:
        try:
            flags, order, unconsumed = parse_flags(argv)
        except ValueError as exc:
            say("ERROR", str(exc))
            say("ERROR", usage())
            fail("invalid command line")
        if flags["help"]:
            sys.stdout.write(usage() + "\n")
            return EXIT_OK
        if unconsumed:
            say("WARN", "Unconsumed cmdline flags: %s" % " ".join(unconsumed))
        benchmark(flags, order)
    except Stop as stop:
        return stop.code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
