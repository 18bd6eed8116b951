"""The qskew device runner: run one job folder through a TFLite interpreter and write the results.

Usage (on the device, or locally)::

    python /any/dir/device_runner/run.py JOB_DIR      # copied to a board as plain files
    python -m device_runner.run JOB_DIR                # from a checkout
    python /any/dir/device_runner/run.py --serve       # one process for many jobs (job folders on stdin)

It prints the handshake line (``protocol.handshake_line``) first, reads ``JOB_DIR/job.json``, loads
the model with the job's runtime and delegate, feeds the stored samples in batches and writes
``outputs.npy`` (raw values of output 0, [N, ...], in the output tensor's dtype) and ``result.json``
(``protocol.RESULT_FIELDS``; written last, via a rename; ``output.sha256`` is the sha256 of
outputs.npy's bytes, so the host trusts a pulled copy only if it matches). The file formats and
exit codes are documented in ``protocol.py``.

This file sequences the steps; they live beside it: ``jobdir.py`` (job.json, inputs, the files
written back, :class:`JobFailure`), ``runtime.py`` (runtime, interpreter, delegate, execution
plan), ``inference.py`` (input conversion and the batch loop). The host pushes exactly the files
in ``device_runner.RUNNER_FILES``.

The runner runs on boards: Python 3.7+, numpy 1.x or 2.x, the standard library and a TFLite runtime
only. It never imports ``harness``.
"""

import platform
import sys
import time
import traceback

import numpy as np

if __package__:
    from device_runner import compiled, inference, protocol, tensors
    from device_runner.inference import infer, to_model_input
    from device_runner.jobdir import (JobFailure, check_input_shape, in_job, load_inputs, read_job,
                                      remove_stale, save_outputs, write_result)
    from device_runner.runtime import (applied_delegate, choose_batch, execution_plan, load_runtime,
                                       make_interpreter, prepare, single_io)
else:  # run as a plain script on a board: the sibling files are top-level modules
    import compiled
    import inference
    import protocol
    import tensors
    from inference import infer, to_model_input
    from jobdir import (JobFailure, check_input_shape, in_job, load_inputs, read_job, remove_stale,
                        save_outputs, write_result)
    from runtime import (applied_delegate, choose_batch, execution_plan, load_runtime,
                         make_interpreter, prepare, single_io)

# The host's benchmark_model runner reuses these three from here (same rules as this runner).
__all__ = ["JobFailure", "choose_batch", "main", "new_result", "run_job", "to_model_input"]


def run_job(job_dir, job, result, clock):
    """Run a checked job, filling ``result``; raises JobFailure on any failure."""
    model_path, inputs_path = in_job(job_dir, job["model"]), in_job(job_dir, job["inputs"])
    x = load_inputs(inputs_path)
    t0 = time.perf_counter()
    runtime = load_runtime(job["runtime"])
    result.update(runtime=runtime.name, runtime_version=str(runtime.version))
    if job.get(tensors.TENSORS_KEY):  # qskew bisect: every tensor, sample by sample (tensors.py)
        out, in_info, out_info, batch = tensors.run_tensor_job(job_dir, job, result, clock, runtime, x, t0)
        return _write_outputs(job_dir, job, result, out, in_info, out_info, batch)
    if job["delegate"] in protocol.COMPILED_DELEGATES:
        return run_compiled_job(job_dir, job, result, clock, runtime, x, t0)
    interpreter = make_interpreter(runtime, model_path, job["delegate"], job["num_threads"])
    in_info, out_info = single_io(interpreter, model_path)
    clock["load_s"] = time.perf_counter() - t0
    check_input_shape(x, in_info, inputs_path)
    batch, dynamic = choose_batch(in_info, job["batch_size"], x.shape[0])
    t0 = time.perf_counter()
    prepare(interpreter, in_info, batch, dynamic)
    clock["prepare_s"] = time.perf_counter() - t0
    plan = execution_plan(interpreter)
    plan["precision"] = {"requested": "model", "reported": "model"}  # CPU kernels: the model's types
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
    _write_outputs(job_dir, job, result, out, in_info, out_info, batch)
    result["input"]["conversion"] = inference.conversion_name(x, in_info)


def run_compiled_job(job_dir, job, result, clock, runtime, x, t0):
    """A job on LiteRT's CompiledModel (gpu, gpu-fp32, cpu-compiled): see ``compiled.py``."""
    model_path, kind = in_job(job_dir, job["model"]), job["delegate"]
    if runtime.name != "ai_edge_litert":
        raise JobFailure("delegate", "delegate %s needs ai_edge_litert's CompiledModel; the job's runtime "
                         "is %s %s" % (kind, runtime.name, runtime.version), protocol.EXIT_RUNTIME)
    in_info, out_info = single_io(make_interpreter(runtime, model_path, "builtin", 1), model_path)
    check_input_shape(x, in_info, in_job(job_dir, job["inputs"]))
    model, buffers, log_text = compiled.open_compiled(model_path, kind, job["num_threads"])
    clock["load_s"] = time.perf_counter() - t0
    report = compiled.runtime_report(kind, log_text, model.is_fully_accelerated(), in_info)
    result["execution_plan"] = compiled.compiled_plan(kind, report, log_text, "none")
    partial = compiled.check_placement(kind, report, log_text, bool(job.get("allow_partial")))
    result["execution_plan"] = compiled.compiled_plan(kind, report, log_text, "none", partial)
    print("prepared: %s %s CompiledModel %s, adapter: %s, fully accelerated: %s"
          % (runtime.name, runtime.version, kind, report["adapter"], report["fully_accelerated"]))
    sys.stdout.flush()
    t0 = time.perf_counter()
    out, per_batch_s, batch = compiled.infer_compiled(
        model, buffers, x, job["preprocess"], in_info, out_info,
        float(job.get("progress_interval_s", protocol.PROGRESS_INTERVAL_S)))
    clock["invoke_s"] = time.perf_counter() - t0
    clock["per_batch_s"] = per_batch_s
    comparison = {} if kind == "cpu-compiled" else compiled.compare_with_cpu(
        out[:batch], _cpu_outputs(runtime, model_path, job, x[:batch], in_info, out_info))
    applied = compiled.judge(kind, report, comparison, bool(job.get("allow_unproven")), partial)
    plan = compiled.compiled_plan(kind, report, log_text, applied, partial)
    plan["precision"] = {"requested": report["precision_requested"],
                         "reported": report["precision_reported"]}
    result.update(execution_plan=plan, delegate_applied=applied, n_samples=int(x.shape[0]),
                  batch_size=batch)
    _write_outputs(job_dir, job, result, out, in_info, out_info, batch)


def _cpu_outputs(runtime, model_path, job, x, in_info, out_info):
    """The same samples on the CPU reference kernels and on XNNPACK: {path: outputs or the
    exception that stopped it} -- the independent check of what a GPU job computed."""
    outs = {}
    for path in compiled.CPU_PATHS:
        try:
            interpreter = make_interpreter(runtime, model_path, path, 1)
            batch, dynamic = choose_batch(in_info, x.shape[0], x.shape[0])
            prepare(interpreter, in_info, batch, dynamic)
            outs[path] = infer(interpreter, x, job["preprocess"], in_info, out_info, batch, dynamic,
                               float("inf"))[0]
        except Exception as exc:  # the check is evidence, not the job: record why it could not run
            outs[path] = exc
    return outs


def _write_outputs(job_dir, job, result, out, in_info, out_info, batch):
    """outputs.npy, and what result.json says about the input and output tensors."""
    outputs_sha256 = save_outputs(in_job(job_dir, job["outputs"]), out, bool(job.get("durable", True)))
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
    """Run the job folder named on the command line (or serve jobs with ``--serve``); returns the
    process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == [protocol.SERVE_FLAG]:
        return serve(sys.stdin)
    clock = {"start": time.perf_counter()}
    _handshake()
    if len(argv) != 1:
        sys.stderr.write("usage: run.py JOB_DIR | run.py %s\n" % protocol.SERVE_FLAG)
        return protocol.EXIT_BAD_JOB
    return run_folder(argv[0], clock)


def serve(lines):
    """Run the job folders read from ``lines`` one after the other in this process (see protocol.py:
    served jobs); each ends with its ``QSKEW-DONE`` line. Returns at end of input. The handshake
    comes first (the host checks the protocol before it sends a job), then again before each job."""
    _handshake()
    while True:
        line = lines.readline()
        if not line:
            return protocol.EXIT_OK
        job_dir = line.rstrip("\r\n")
        if not job_dir:
            continue
        clock = {"start": time.perf_counter()}
        _handshake()
        code = run_folder(job_dir, clock)
        sys.stderr.flush()
        print(protocol.done_line(code))
        sys.stdout.flush()


def _handshake():
    """The handshake line; the first one measures how to fill float32 inputs here (1.5)."""
    if inference.FLOAT_FILL is None:
        inference.measure_float_fill()
    print(protocol.handshake_line(platform.python_version(), np.__version__, inference.FLOAT_FILL))
    sys.stdout.flush()


def run_folder(job_dir, clock):
    """Run one job folder, always leaving result.json behind when it can; returns the exit code."""
    result = new_result()
    result_path = in_job(job_dir, protocol.DEFAULT_RESULT)
    code, durable = protocol.EXIT_OK, True
    try:
        job = read_job(job_dir)
        result_path, durable = in_job(job_dir, job["result"]), bool(job.get("durable", True))
        remove_stale([result_path, in_job(job_dir, job["outputs"])])
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
        write_result(result_path, result, durable)
    except OSError as exc:
        sys.stderr.write("qskew runner: cannot write %s: %s\n" % (result_path, exc))
        return code or protocol.EXIT_BAD_JOB
    return code


if __name__ == "__main__":
    sys.exit(main())
