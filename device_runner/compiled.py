"""LiteRT's CompiledModel path: the delegates ``gpu``, ``gpu-fp32`` and ``cpu-compiled``.

ai-edge-litert 2.x reaches its GPU accelerator (WebGPU/Dawn over Vulkan, Metal or OpenCL) only
through ``CompiledModel``; ``cpu-compiled`` runs the same API on the CPU (XNNPACK), to separate the
API's effects from the device's. ``gpu`` keeps LiteRT's default GPU precision (fp16 allowed);
``gpu-fp32`` sets ``GpuOptions(enforce_f32=True)``.

The Python ``CompiledModel`` reports only ``is_fully_accelerated()``; everything else a job records
about where it ran comes from LiteRT's and Dawn's own log lines, captured while the model is
compiled and first run (which accelerator registered, "Selected adapter: <name>, ...,
backend=Vulkan, adapterType=...", what could not be delegated). Nothing is guessed: a fact no line
states is "unknown".

No silent fallback: a GPU job is run only when the runtime says the whole graph is on the GPU,
or the job sets ``allow_partial`` (then it is labelled "gpu (partial)"). A model the accelerator
refuses (dynamic shapes, no Vulkan loader, no adapter) fails at stage ``delegate`` quoting the
runtime. A full-integer model that reports "fully accelerated" is still not proof (on SwiftShader
its outputs are bit-identical to CPU XNNPACK and the runtime cannot get buffer requirements for
its int8 tensors), so every GPU job's first batch is also run on the CPU reference kernels and on
XNNPACK and compared (``cpu_comparison``): a full-integer job is proven only when no runtime
warning speaks against it and its outputs differ from every CPU path. An unproven job fails at
stage ``delegate`` with that evidence unless the job sets ``allow_unproven``.
"""

import ctypes.util
import os
import re
import sys
import tempfile
import time

import numpy as np

if __package__:
    from device_runner import protocol
    from device_runner.inference import to_model_input
    from device_runner.jobdir import JobFailure
else:  # run as a plain script on a board: the sibling files are top-level modules
    import protocol
    from inference import to_model_input
    from jobdir import JobFailure

MAX_LOG_LINES = 20  # runtime log lines kept in the execution plan
PLAN_SOURCE = "compiled_model"
# "Selected adapter: SwiftShader Device (Subzero), arch=swiftshader, vendor=google, backend=Vulkan,
#  adapterType=CPU / Software" (Dawn, via LiteRT's environment.cc)
_ADAPTER = re.compile(r"Selected adapter: (?P<name>[^,\n]+)(?P<rest>.*)$", re.M)
_FIELD = re.compile(r"(\w+)=([^,]+)")
_REGISTERED = re.compile(r"GPU accelerator\((?P<lib>[^)]+)\) registered")
# lines that say why the GPU could not take (all of) the model
_TROUBLE = re.compile(r"ERROR|Warning: |WARNING: |Couldn't load|No adapters|static-sized|"
                      r"Failed to|not supported|unsupported", re.I)
# the runtime's lines about parts this job does not use (NPU and compiler plugins, OpenCL)
_NOISE = ("compiler_plugin", "npu_registry", "InitGoogle", "OpenCL library", "Could not load shared")
_UNPROVEN_SIGNS = ("Failed to get buffer requirements",)
CPU_PATHS = ("reference", "xnnpack")  # what a GPU job's first batch is compared with


def precision_requested(kind):
    """What the delegate was asked to compute in: fp16 allowed (LiteRT's GPU default), fp32, or
    the model's own types (CPU kernels)."""
    return {"gpu": "fp16", "gpu-fp32": "fp32"}.get(kind, "model")


class _Captured(object):
    """Collects what native code writes to file descriptors 1 and 2 (LiteRT logs there, below
    Python), then writes it on to stderr so the runner's output still shows it."""

    def __init__(self):
        self.text = ""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        sys.stderr.write(self.text)
        sys.stderr.flush()
        return False


def _import_compiled():
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import (CpuOptions, GpuOptions, HardwareAccelerator,
                                            Options)
    except Exception as exc:
        raise JobFailure("delegate", "the CompiledModel delegates (gpu, gpu-fp32, cpu-compiled) need "
                         "ai-edge-litert >= 2.0 with CompiledModel and Options: %s" % exc,
                         protocol.EXIT_RUNTIME)
    return CompiledModel, Options, HardwareAccelerator, GpuOptions, CpuOptions


def _options(kind, num_threads):
    CompiledModel, Options, Accel, GpuOptions, CpuOptions = _import_compiled()
    cpu = CpuOptions(num_threads=int(num_threads))
    if kind == "cpu-compiled":
        return CompiledModel, Options(hardware_accelerators=Accel.CPU, cpu_options=cpu)
    gpu = GpuOptions(enforce_f32=(kind == "gpu-fp32"))
    return CompiledModel, Options(hardware_accelerators=Accel.GPU, gpu_options=gpu, cpu_options=cpu)


def _missing_piece(kind, log_text):
    """The piece of the GPU stack the runtime's words point at, for the job's error."""
    if kind == "cpu-compiled":
        return ""
    if ctypes.util.find_library("vulkan") is None and "libvulkan" in log_text:
        return ("the Vulkan loader libvulkan.so.1 is missing (Debian: apt-get install libvulkan1)")
    if "No adapters found" in log_text:
        return ("no usable Vulkan device: no GPU driver (ICD) that Dawn accepts; without a GPU, "
                "install SwiftShader (Debian: chromium) and set "
                "VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json")
    if "static-sized" in log_text or "Failed to modify graph" in log_text:
        return ("the GPU needs static shapes: run a fixed-batch copy of the variant "
                "([quantize] fixed_batch = N, which qskew makes for GPU jobs)")
    return ""


def trouble_lines(log_text):
    """The runtime's lines that say what went wrong or could not be delegated."""
    out = []
    for line in log_text.splitlines():
        line = line.strip()
        if line and _TROUBLE.search(line) and not any(n in line for n in _NOISE) and line not in out:
            out.append(line)
    return out[:MAX_LOG_LINES]


def open_compiled(model_path, kind, num_threads):
    """(CompiledModel, (input buffers, output buffers), captured runtime log) -- the log covers
    compilation and buffer creation, where LiteRT says what it could not do; a refusal is a
    "delegate" failure quoting the runtime."""
    CompiledModel, options = _options(kind, num_threads)
    error = model = buffers = None
    with _Captured() as cap:
        try:
            model = CompiledModel.from_file(model_path, options=options)
            buffers = (model.create_input_buffers(0), model.create_output_buffers(0))
        except Exception as exc:
            error = exc
    if error is not None:
        words = trouble_lines(cap.text) or [str(error).strip()]
        piece = _missing_piece(kind, cap.text)
        raise JobFailure("delegate", "%s could not compile %s for %s: %s%s" % (
            "LiteRT CompiledModel", model_path, kind, " | ".join(words),
            ("; " + piece) if piece else ""), protocol.EXIT_RUNTIME)
    return model, buffers, cap.text


def runtime_report(kind, log_text, fully, in_info):
    """What the runtime told about this job (never a guess: "unknown" where nothing says).

    ``evidence`` collects what speaks against the GPU having computed the job (the runtime's
    warnings); :func:`judge` adds the comparison with the CPU and decides ``unproven``."""
    report = {"accelerator_registered": "unknown", "adapter": "unknown", "backend": "unknown",
              "adapter_type": "unknown", "fully_accelerated": bool(fully),
              "precision_requested": precision_requested(kind), "precision_reported": "unknown",
              "integer_io": np.dtype(in_info["dtype"]).kind in "iu", "unproven": False}
    registered = _REGISTERED.search(log_text)
    if registered:
        report["accelerator_registered"] = registered.group("lib")
    adapter = _ADAPTER.search(log_text)
    if adapter:
        fields = dict(_FIELD.findall(adapter.group("rest")))
        report.update(adapter=adapter.group("name").strip(),
                      backend=fields.get("backend", "unknown").strip(),
                      adapter_type=fields.get("adapterType", "unknown").strip())
    if kind == "cpu-compiled":
        report.update(accelerator_registered="cpu", adapter="cpu", backend="cpu",
                      adapter_type="cpu", precision_reported="model")
    signs = [line.strip() for line in log_text.splitlines() if any(s in line for s in _UNPROVEN_SIGNS)]
    report["evidence"] = list(dict.fromkeys(signs))[:MAX_LOG_LINES] if kind != "cpu-compiled" else []
    return report


def check_placement(kind, report, log_text, allow_partial):
    """Before any sample runs: refuse a GPU job the runtime does not place whole on the GPU (no
    silent CPU fallback) unless the job allows partial placement; returns whether it is partial."""
    if kind == "cpu-compiled" or report["fully_accelerated"]:
        return False
    if not allow_partial:
        raise JobFailure("delegate", "LiteRT did not place the whole model on the GPU "
                         "(is_fully_accelerated() is False; partial placement is not allowed: "
                         "set allow_partial = true to run it): %s"
                         % (" | ".join(trouble_lines(log_text)) or "the runtime gave no reason"),
                         protocol.EXIT_RUNTIME)
    return True


def compare_with_cpu(gpu_out, cpu_outs):
    """{path: {"identical", "max_abs_diff"} or {"error"}} of the GPU's outputs against the same
    samples on each CPU path (raw output values: quantized steps for an integer model)."""
    out = {"samples": int(len(gpu_out))}
    for path, got in cpu_outs.items():
        if isinstance(got, Exception):
            out[path] = {"error": str(got)}
            continue
        diff = np.abs(gpu_out.astype(np.float64) - got.astype(np.float64))
        out[path] = {"identical": bool(np.array_equal(gpu_out, got)),
                     "max_abs_diff": float(diff.max()) if diff.size else 0.0}
    return out


def _comparison_words(comparison):
    words = []
    for path, c in sorted(comparison.items()):
        if path == "samples":
            continue
        words.append("%s: %s" % (path, "could not run (%s)" % c["error"] if "error" in c else
                                 "bit-identical" if c["identical"] else "max |diff| %.3g" % c["max_abs_diff"]))
    return "the first %d GPU outputs against the same samples on the CPU: %s" % (
        comparison.get("samples", 0), ", ".join(words) or "no CPU path compared")


def judge(kind, report, comparison, allow_unproven, partial):
    """After the run: is the GPU proven to have computed the job? Returns the delegate_applied label.

    A full-integer model is proven only when no runtime warning speaks against it and its outputs
    differ from every CPU path compared (outputs bit-identical to a CPU path are not evidence of
    the GPU); a float model by ``is_fully_accelerated()`` and the absence of such warnings."""
    if kind == "cpu-compiled":
        return "cpu-compiled"
    report["cpu_comparison"] = comparison
    ran = [c for p, c in comparison.items() if p != "samples" and "error" not in c]
    same = any(c["identical"] for c in ran)
    unproven = bool(report["evidence"]) or (report["integer_io"] and (same or not ran))
    if report["integer_io"]:
        report["evidence"].append("the model has integer input (is_fully_accelerated() is True for "
                                  "full-integer models whose outputs are bit-identical to CPU XNNPACK)")
    report["evidence"].append(_comparison_words(comparison) + (
        " -- outputs bit-identical to a CPU path are not evidence of the GPU" if same else ""))
    report["unproven"] = unproven
    if unproven and not allow_unproven:
        raise JobFailure("delegate", "the GPU is not proven to have computed this model: %s "
                         "(set allow_unproven = true to keep such jobs, labelled unproven)"
                         % "; ".join(report["evidence"]), protocol.EXIT_RUNTIME)
    labels = [w for w, on in (("partial", partial), ("unproven", unproven)) if on]
    return "%s (%s)" % (kind, ", ".join(labels)) if labels else kind


def compiled_plan(kind, report, log_text, applied, partial=False):
    """The execution plan of a CompiledModel job: whole-graph statements only (no per-node view);
    ``on`` is where the graph ran as far as the runtime says (partial: some ops on the CPU)."""
    fully = report["fully_accelerated"] and kind != "cpu-compiled"
    lines = trouble_lines(log_text)
    if partial:
        lines.insert(0, "is_fully_accelerated() is False: some ops ran on the CPU; "
                        "the runtime does not say which")
    return {"available": True, "source": PLAN_SOURCE, "fully_delegated": fully,
            "delegate_partitions": 1 if fully else (None if partial else 0),
            "on": "delegate" if fully else ("partial" if partial else "cpu"),
            "unproven": report["unproven"], "delegate": applied, "runtime_report": report,
            "log_lines": lines[:MAX_LOG_LINES]}


def _io_sizes(model):
    signature = list(model.get_signature_list())[0]
    ins = list(model.get_input_tensor_details(signature).values())
    outs = list(model.get_output_tensor_details(signature).values())
    if len(ins) != 1 or len(outs) != 1:
        raise JobFailure("model_load", "the CompiledModel signature has %d inputs and %d outputs; the "
                         "runner drives exactly one of each" % (len(ins), len(outs)), protocol.EXIT_RUNTIME)
    return [int(d) for d in ins[0]["shape"]], [int(d) for d in outs[0]["shape"]]


def infer_compiled(model, buffers, x, preprocess, in_info, out_info, progress_interval_s):
    """Every sample through the compiled model at its own (fixed) batch; the last batch padded.

    Returns (outputs [N, ...] in the output dtype, per-batch run seconds, batch size).
    """
    in_shape, out_shape = _io_sizes(model)
    batch, n = in_shape[0], x.shape[0]
    ins, outs = buffers
    out_dtype, count = np.dtype(out_info["dtype"]), int(np.prod(out_shape))
    out = np.empty((n,) + tuple(out_shape[1:]), dtype=out_dtype)
    per_batch_s, reported, start = [], time.perf_counter(), 0
    try:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            xb = to_model_input(x[start:start + m], preprocess, in_info)
            if m != batch:
                xb = np.concatenate([xb, np.zeros((batch - m,) + xb.shape[1:], dtype=xb.dtype)])
            ins[0].write(np.ascontiguousarray(xb))
            t0 = time.perf_counter()
            model.run_by_index(0, ins, outs)
            per_batch_s.append(time.perf_counter() - t0)
            out[start:start + m] = outs[0].read(count, out_dtype).reshape(out_shape)[:m]
            if t0 - reported >= progress_interval_s:
                print(protocol.progress_line(start + m, n), flush=True)
                reported = t0
    except JobFailure:
        raise
    except Exception as exc:
        raise JobFailure("invoke", "CompiledModel run failed on samples %d..%d: %s"
                         % (start, min(start + batch, n) - 1, exc), protocol.EXIT_RUNTIME)
    return out, per_batch_s, batch
