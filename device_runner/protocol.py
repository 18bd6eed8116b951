"""The host <-> device contract of qskew: the single source of truth for job and result files.

This module runs on the device too: it must stay Python 3.7 compatible and import only the
standard library. ``harness`` imports it; it never imports ``harness``.

A job is a folder holding ``job.json``; the model and inputs may sit elsewhere (paths in job.json
are relative to the job folder or absolute), which lets a device keep one content-addressed copy
of a test set for many jobs.

job.json (written by the host)::

    {
      "protocol": "1.2",
      "model": "model.tflite",            # path to the .tflite file
      "inputs": "inputs.npy",             # [N, ...] samples in their storage dtype (e.g. uint8)
      "preprocess": {"scale": 0.0625, "offset": 0.0},   # float_x = stored * scale + offset
      "delegate": "xnnpack",              # see DELEGATES / parse_delegate
      "num_threads": 2,
      "batch_size": 64,                   # wanted; the runner uses 1 if the batch dim is fixed at 1
      "runtime": "auto",                  # or one of RUNTIMES
      "outputs": "outputs.npy",           # written by the runner
      "result": "result.json",            # written by the runner
      "progress_interval_s": 1.0,         # optional (1.1): print progress at most this often
      "allow_unproven": false,            # optional (1.3): keep a GPU job whose placement the
                                          # runtime does not prove, labelled "gpu (unproven)"
      "allow_partial": false              # optional (1.4): run a GPU job whose model the
                                          # accelerator takes only in part, labelled "gpu (partial)"
      "durable": true,                    # optional (1.4): fsync outputs and result; false for a
                                          # served job, whose host reads them at once
      "tensors": {"file": "tensors.npz"}  # optional (1.5, additive): a tensor job for qskew bisect;
                                          # every tensor kept, result.json gains "tensors" (tensors.py)
    }

The runner prints one handshake line first (``QSKEW-RUNNER protocol=1.5 python=3.9.18
numpy=1.26.4 convert=scale``), then progress lines (``QSKEW-PROGRESS 320 719``, at most once a second), and writes ``outputs.npy`` (raw values of output 0 in the
tensor's own dtype, [N, ...]) and ``result.json`` (RESULT_FIELDS). The result file is written last
(via a rename), so its presence means the job is finished, successfully or not. A runner removes
an earlier run's result and outputs from the job folder before it starts, so a rerun never leaves
stale files to be read. ``delegate_applied`` is read from the interpreter's execution plan after
prepare ("none" when no node was delegated); ``execution_plan`` holds the counts behind it
({"available", "source", "nodes", "delegated_nodes", "delegate_partitions", "ops", "cpu_ops",
"placement"}); ``placement`` (since 1.2) lists every original node in execution order as
{"node": index, "op": name, "on": "delegate" or "cpu"}.

result.json (written by the runner)::

    {
      "protocol": "1.2", "status": "ok",          # or "error"
      "error": null, "error_kind": null,          # job | model_load | delegate | prepare | input | invoke
      "runtime": "ai_edge_litert", "runtime_version": "2.3.0",
      "python": "3.11.7", "numpy": "2.4.6", "platform": "Linux-...-x86_64-with-glibc2.36",
      "delegate_requested": "xnnpack", "delegate_applied": "xnnpack",   # or "none", "external:<path>"
      "execution_plan": {"available": true, "nodes": 6, "delegated_nodes": 2, ...},
      "num_threads": 2, "batch_size": 64, "n_samples": 150,
      "input": {"dtype": "int8", "shape": [64, 8, 8, 1], "shape_signature": [-1, 8, 8, 1],
                "scale": 0.0039, "zero_point": -128, "conversion": "table"},   # conversion: 1.5
      "output": {"file": "outputs.npy", "dtype": "int8", "shape": [150, 10], "scale": 0.0059,
                 "zero_point": 13, "sha256": "9f2c..."},  # sha256 of outputs.npy (since 1.1)
      "timings": {"load_s": ..., "prepare_s": ..., "invoke_s": ..., "total_s": ..., "per_batch_s": [...]}
    }

error_kind "job" means the job could not be run here at all (malformed job, no runtime importable);
the other kinds are failures of this model on this runtime. Timings: load_s = runtime import and
model load; prepare_s = resize and allocate_tensors; invoke_s = the whole inference loop (input
conversion, copies and invokes); per_batch_s = each invoke() call alone; total_s = the runner's
wall time after start-up.

Served jobs (1.4): ``run.py --serve`` stays up for a device session and reads job folders from
stdin, one per line. It prints the handshake line once when it starts; for each job it prints
the handshake line again, runs the job exactly as ``run.py
JOB_DIR`` would (same files, same result.json) and ends with ``QSKEW-DONE <exit code>``, the code
that ``run.py JOB_DIR`` would have exited with. End of stdin ends the runner. The runtime is
imported once per session instead of once per job. Over ADB (1.5) the host runs it on one
``shell,v2,raw:`` stream behind ``sh -c 'echo "QSKEW-PID $$"; exec "$@"'``, so the first line it
reads is the runner's process id (to kill it past a job's time limit), then the handshake.

Input conversion (1.5): a runner measures at start whether a float32 input is filled faster from
8/16-bit samples by scaling in place or by a 256-entry table (the same float32 operations, so the
same bits) and says which in its handshake (``convert=scale``); result.json's ``input.conversion``
names what the job used ("scale", "table" for a float input; "table" for an integer input from
8/16-bit samples; "chunk" for other storage). A 1.4 runner (no ``convert=``) scales.

Exit codes: EXIT_OK, EXIT_BAD_JOB (job folder unreadable or malformed), EXIT_RUNTIME (the model or
delegate failed to load, prepare or run; details in result.json), EXIT_PROTOCOL.
"""

import json

PROTOCOL_VERSION = "1.5"  # 1.1: output.sha256 (the host checks a pulled file against it);
                          # 1.2: execution_plan.placement (which node ran where)
                          # 1.3: CompiledModel delegates, job.allow_unproven,
                          #      execution_plan.precision / runtime_report
                          # 1.4: job.allow_partial, runtime_report.cpu_comparison (GPU outputs
                          #      against the CPU reference kernels and XNNPACK)
                          # 1.4: run.py --serve: one runner per device session, jobs over stdin
                          # 1.5: handshake convert=scale|table (measured at start),
                          #      result input.conversion; served over ADB on a shell-v2 stream
SERVE_FLAG = "--serve"        # run.py --serve: read job folders from stdin, one per line (since 1.4)
DONE_PREFIX = "QSKEW-DONE"    # "QSKEW-DONE <exit code>": a served job has finished (since 1.4)
HANDSHAKE_PREFIX = "QSKEW-RUNNER"
PROGRESS_PREFIX = "QSKEW-PROGRESS"  # "QSKEW-PROGRESS <samples done> <samples in all>" (since 1.1)
PROGRESS_INTERVAL_S = 1.0           # a runner prints progress at most this often: a phone job can run minutes

JOB_FILE = "job.json"
DEFAULT_OUTPUTS = "outputs.npy"
DEFAULT_RESULT = "result.json"

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
DELEGATES = ("xnnpack", "reference", "builtin", "gpu", "gpu-fp32", "cpu-compiled", "nnapi", "hexagon",
             "edgetpu")
# plus "nnapi:<accelerator name>", "edgetpu:<device>" (usb, usb:0, pci, pci:0, :0) and
# "external:<path.so>[,key=value...]"
# The Python runner drives these; nnapi and hexagon exist only in runners built on the C++ runtime
# (the benchmark_model runner kind), since the Python wheels ship neither. gpu, gpu-fp32 (fp32
# enforced) and cpu-compiled (the same API on the CPU) run on ai_edge_litert's CompiledModel (1.3).
COMPILED_DELEGATES = ("gpu", "gpu-fp32", "cpu-compiled")
PYTHON_DELEGATES = ("xnnpack", "reference", "builtin", "edgetpu", "external") + COMPILED_DELEGATES
# Delegates whose jobs run a fixed-batch copy of the variant (batch = the job's batch size): LiteRT's
# GPU needs every shape static, and cpu-compiled runs the very file the GPU jobs run (the Python
# CompiledModel cannot resize an input), so that cpu-compiled vs gpu differs only in the device.
FIXED_BATCH_DELEGATES = ("gpu", "gpu-fp32", "cpu-compiled")
EDGETPU_LIBRARY = "libedgetpu.so.1"  # the Edge TPU delegate library on Linux boards (pycoral's name)

EXIT_OK = 0
EXIT_BAD_JOB = 2
EXIT_RUNTIME = 3
EXIT_PROTOCOL = 4

RESULT_FIELDS = (
    "protocol", "status", "error", "error_kind", "runtime", "runtime_version", "python", "numpy",
    "platform", "delegate_requested", "delegate_applied", "num_threads", "batch_size", "n_samples",
    "input", "output", "timings", "execution_plan",
)


def major(version):
    """Major part of a protocol version string: "1.0" -> 1."""
    return int(str(version).split(".")[0])


def handshake_line(python_version, numpy_version, float_fill=None):
    """The first line a runner prints; ``float_fill`` (1.5): how this runner fills float32 inputs
    from 8/16-bit samples, "scale" or "table", as it measured at start."""
    line = "%s protocol=%s python=%s numpy=%s" % (
        HANDSHAKE_PREFIX, PROTOCOL_VERSION, python_version, numpy_version)
    return line if float_fill is None else "%s convert=%s" % (line, float_fill)


def progress_line(done, total):
    """A progress line: how many samples of the job have been run."""
    return "%s %d %d" % (PROGRESS_PREFIX, done, total)


def parse_progress(text):
    """The last progress line in ``text`` as (done, total), or None if there is none."""
    for line in reversed(text.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == PROGRESS_PREFIX and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def parse_handshake(text):
    """Find the handshake in a runner's output; return its key=value fields, or None if absent."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(HANDSHAKE_PREFIX + " "):
            fields = {}
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                fields[key] = value
            return fields
    return None


def parse_delegate(spec):
    """Split a delegate spec into (kind, library_path, options).

    "xnnpack" -> ("xnnpack", None, {}); "nnapi:qti-dsp" -> ("nnapi", None, {"accelerator":
    "qti-dsp"}); "edgetpu:usb" -> ("edgetpu", "libedgetpu.so.1", {"device": "usb"});
    "external:/vendor/lib/libfoo.so,cache=1,mode=fast" -> ("external", "/vendor/lib/libfoo.so",
    {"cache": "1", "mode": "fast"}).
    Raises ValueError on an unknown or malformed spec.
    """
    spec = str(spec).strip()
    if spec == "edgetpu":
        return "edgetpu", EDGETPU_LIBRARY, {}
    if spec in DELEGATES:
        return spec, None, {}
    kind, sep, rest = spec.partition(":")
    if sep and kind == "nnapi":
        if not rest:
            raise ValueError("nnapi:<accelerator> needs an accelerator name (e.g. nnapi:qti-dsp)")
        return "nnapi", None, {"accelerator": rest}
    if sep and kind == "edgetpu":
        if not rest:
            raise ValueError("edgetpu:<device> needs a device (usb, usb:0, pci, pci:0, :0)")
        return "edgetpu", EDGETPU_LIBRARY, {"device": rest}
    if sep and kind == "external":
        parts = rest.split(",")
        path = parts[0]
        if not path:
            raise ValueError("external delegate needs a library path: external:<path.so>[,k=v...]")
        options = {}
        for item in parts[1:]:
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError("external delegate option %r is not key=value" % item)
            options[key] = value
        return "external", path, options
    raise ValueError("unknown delegate %r; known: %s, nnapi:<accelerator>, edgetpu:<device>, "
                     "external:<path.so>[,key=value...]" % (spec, ", ".join(DELEGATES)))


def make_job(model, inputs, preprocess, delegate="xnnpack", num_threads=2, batch_size=64,
             runtime="auto", outputs=DEFAULT_OUTPUTS, result=DEFAULT_RESULT, progress_interval_s=None,
             allow_unproven=False, allow_partial=False, durable=True):
    """A job.json dictionary; validates the delegate and runtime names."""
    parse_delegate(delegate)
    if runtime != "auto" and runtime not in RUNTIMES:
        raise ValueError("unknown runtime %r; known: auto, %s" % (runtime, ", ".join(RUNTIMES)))
    return {
        "protocol": PROTOCOL_VERSION, "model": model, "inputs": inputs,
        "preprocess": {"scale": float(preprocess["scale"]), "offset": float(preprocess["offset"])},
        "delegate": delegate, "num_threads": int(num_threads), "batch_size": int(batch_size),
        "runtime": runtime, "outputs": outputs, "result": result,
        "progress_interval_s": float(PROGRESS_INTERVAL_S if progress_interval_s is None else progress_interval_s),
        "allow_unproven": bool(allow_unproven), "allow_partial": bool(allow_partial), "durable": bool(durable),
    }


def dumps(obj):
    """Canonical JSON used for job and result files."""
    return json.dumps(obj, indent=2, sort_keys=True)


def done_line(exit_code):
    """``QSKEW-DONE <exit code>``: the last line of a served job (1.4)."""
    return "%s %d" % (DONE_PREFIX, exit_code)


def parse_done(line):
    """The exit code of a ``QSKEW-DONE`` line, else None."""
    parts = line.split()
    if len(parts) == 2 and parts[0] == DONE_PREFIX:
        try:
            return int(parts[1])
        except ValueError:
            return None
    return None
