"""What goes into TFLite's ``benchmark_model`` binary and what comes out: its flags for a delegate,
and its log (batch sections, timings, the delegate registrar's statements, a failure's kind).

The wording read here is the binary's own (``tflite/tools/benchmark/benchmark_tflite_model.cc`` and
``benchmark_model.cc``); :mod:`harness.runners.benchmark_model` runs the job and calls these.

>>> delegate_flags("nnapi:qti-dsp")
('--use_nnapi=true', '--nnapi_accelerator_name=qti-dsp')
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from device_runner import protocol
from harness.errors import ConfigError
from harness.on_device import Transfer
from harness.placement import BENCHMARK_LOG_SOURCE
from harness.records import ExecutionPlan, Timings
from harness.text import tail

PLAN_SOURCE = BENCHMARK_LOG_SOURCE  # harness.placement reads whole-graph statements from it
MAX_LOG_LINES = 20               # delegate log lines kept in the execution plan
# Lines the job script writes around each invocation in benchmark.log, and on its own stdout/stderr.
BATCH_MARK, EXIT_MARK = "QSKEW-BATCH", "QSKEW-BATCH-EXIT"
FAILED_MARK, DONE_MARK, SCRIPT_ERROR = "QSKEW-BATCH-FAILED", "QSKEW-DONE", "QSKEW-SCRIPT-ERROR"
REFERENCE_UNSUPPORTED = (
    "benchmark_model cannot select TFLite's reference kernels: neither it nor its delegate "
    "registrar has a flag for them (it builds BuiltinOpResolver, or "
    "BuiltinOpResolverWithoutDefaultDelegates once --use_xnnpack is given); `builtin` "
    "(--use_xnnpack=false, the built-in CPU kernels) is the closest CPU baseline")

# The delegate registrar's statements after applying a delegate (benchmark_tflite_model.cc, Init).
_APPLIED = re.compile(r"Explicitly applied (?P<name>\S+) delegate, and the model graph will be "
                      r"(?P<how>completely|partially) executed by the delegate"
                      r"(?: w/ (?P<kernels>\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (?P<name>\S+) delegate is explicitly applied, the model graph "
                          r"will not be executed by the delegate")
_DELEGATE_WORDS = re.compile(r"delegat|acceleration", re.I)
# "Inference timings in us: Init: 2141, First inference: 0, Warmup (avg): 0, Inference (avg): 176"
_NUMBER = r"([-+]?(?:nan|inf|\d+(?:\.\d*)?(?:e[-+]?\d+)?))"
_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUMBER + r", First inference: " + _NUMBER
                      + r", Warmup \(avg\): " + _NUMBER + r", Inference \(avg\): " + _NUMBER, re.I)
_STANDIN_RUNTIME = re.compile(r"stand-in \(not TFLite's binary\): runtime (\S+) (\S+)")
_VERSION = re.compile(r"(?:TF ?Lite|LiteRT)\S*\s+(?:runtime\s+)?version:?\s*v?(\d[\w.\-]*)", re.I)
_EXIT_AT_END = re.compile(EXIT_MARK + r" (\d+) (-?\d+)$")


class UnsupportedDelegate(ValueError):
    """A delegate spec the benchmark_model binary has no flags for (the job's error, not a crash)."""


def delegate_flags(spec: str) -> tuple[str, ...]:
    """The benchmark_model flags for a qskew delegate spec (device_runner.protocol.parse_delegate).

    External delegates (and the Edge TPU's), gpu, nnapi and hexagon run with ``--use_xnnpack=false``:
    the ops they do not take run on the built-in kernels, so a fallback can never look like XNNPACK
    and every delegate kernel is the named delegate's. The GPU's precision is always explicit:
    ``gpu`` allows fp16 (``--gpu_precision_loss_allowed=true``, the binary's default), ``gpu-fp32``
    does not. Raises ConfigError for a malformed spec, UnsupportedDelegate for one the binary
    cannot express.
    """
    try:
        kind, library, options = protocol.parse_delegate(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if kind == "reference":
        raise UnsupportedDelegate(REFERENCE_UNSUPPORTED)
    if kind == "cpu-compiled":
        raise UnsupportedDelegate("cpu-compiled is LiteRT's CompiledModel API on the CPU, which "
                                  "benchmark_model does not use; run it with runner = \"python\"")
    simple = {"xnnpack": ("--use_xnnpack=true",), "builtin": ("--use_xnnpack=false",),
              "gpu": ("--use_gpu=true", "--gpu_precision_loss_allowed=true", "--use_xnnpack=false"),
              "gpu-fp32": ("--use_gpu=true", "--gpu_precision_loss_allowed=false", "--use_xnnpack=false"),
              "hexagon": ("--use_hexagon=true", "--use_xnnpack=false")}
    if kind in simple:
        return simple[kind]
    if kind == "nnapi":
        accelerator = options.get("accelerator")
        return (("--use_nnapi=true",) + ((f"--nnapi_accelerator_name={accelerator}",) if accelerator else ())
                + ("--use_xnnpack=false",))
    for key, value in options.items():  # the registrar splits on ';' then ':' and drops the rest
        if any(c in key + value for c in ";:"):
            raise UnsupportedDelegate(
                f"benchmark_model's --external_delegate_options cannot carry {key}={value!r}: it "
                f"splits options on ';' and each on ':', and drops an option that does not split "
                f"into exactly key:value")
    flags = ("--use_xnnpack=false", f"--external_delegate_path={library}")
    if options:
        flags += ("--external_delegate_options=" + ";".join(f"{k}:{v}" for k, v in options.items()),)
    return flags


def applied_name(spec: str) -> str:
    """What DeviceRun.delegate_applied says when the delegate took part of the graph."""
    kind, library, _ = protocol.parse_delegate(spec)
    if kind == "external":
        return f"external:{library}"
    if kind in ("nnapi", "gpu", "gpu-fp32", "hexagon"):
        return spec.split(",")[0]
    return kind  # xnnpack, edgetpu (as the Python runner names it)


# The name the registrar gives each delegate kind in "Explicitly applied <NAME> delegate".
REGISTRAR_NAMES = {"xnnpack": "XNNPACK", "gpu": "GPU", "gpu-fp32": "GPU", "nnapi": "NNAPI",
                   "hexagon": "Hexagon", "external": "EXTERNAL", "edgetpu": "EXTERNAL"}
# The binary's own words when it could not create a delegate and went on without it (exit 0):
# the providers' WARN/INFO lines, and the flag parser's for flags this build does not know.
_FALLBACK_WORDS = re.compile(r"acceleration is unsupported|Could not create \S+ delegate|"
                             r"Unable to load external delegate|Unconsumed cmdline flags|"
                             r"delegate is explicitly applied, the model graph will not|"
                             r"Failed to create|not supported on this platform", re.I)
# What the binary prints when it cannot write outputs (TF < 2.10 has no --output_filepath).
_NO_OUTPUT_FLAG = re.compile(r"Unconsumed cmdline flags:.*--output_filepath")


def precision_flag(spec: str) -> dict[str, str]:
    """The precision a benchmark_model job asked for, from its flags: fp16 allowed or fp32 for the
    GPU, the model's own types on the CPU delegates (NNAPI: fp16 not allowed by default)."""
    kind = protocol.parse_delegate(spec)[0]
    requested = {"gpu": "fp16", "gpu-fp32": "fp32"}.get(kind, "model")
    return {"requested": requested, "reported": "unknown" if kind in ("gpu", "gpu-fp32") else requested}


def unconfirmed_delegate(texts: Sequence[str], spec: str) -> str | None:
    """Why the job cannot count as run on its delegate, or None when every invocation confirms it.

    benchmark_model that cannot create a delegate (no GPU, no NNAPI, a library that will not load)
    logs a warning, runs the graph on the CPU and exits 0. A job is the delegate's only when each
    invocation's log has "Explicitly applied <NAME> delegate" for the delegate asked for.
    """
    name = REGISTRAR_NAMES.get(protocol.parse_delegate(spec)[0])
    if name is None:
        return None  # builtin: no delegate to confirm
    applied = re.compile(r"Explicitly applied %s delegate, and the model graph will be "
                         r"(?:completely|partially) executed" % re.escape(name))
    for i, text in enumerate(texts):
        if applied.search(text):
            continue
        why = [line.strip() for line in text.splitlines() if _FALLBACK_WORDS.search(line)]
        return (f"benchmark_model did not apply the {name} delegate in invocation {i} (no \"Explicitly "
                f"applied {name} delegate\" line; the binary runs such a job on the CPU and exits 0): "
                + ("; ".join(dict.fromkeys(why)) if why else "the log gives no reason"))
    return None


def too_old_for_outputs(log_text: str) -> bool:
    """Whether the binary ignored --output_filepath (TF < 2.10: "Unconsumed cmdline flags")."""
    return bool(_NO_OUTPUT_FLAG.search(log_text))


def split_log(text: str) -> list[tuple[int, int | None, str]]:
    """benchmark.log -> [(batch index, exit status or None, that invocation's output)]."""
    sections: list[list] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == BATCH_MARK and parts[1].isdigit():
            sections.append([int(parts[1]), None, []])
            continue
        end = _EXIT_AT_END.search(line)
        if end and sections:  # an output without a final newline shares the marker's line
            sections[-1][1] = int(end.group(2))
            line = line[:end.start()]
            if not line:
                continue
        if sections:
            sections[-1][2].append(line)
    return [(i, status, "\n".join(body)) for i, status, body in sections]


def parse_timings(text: str) -> dict[str, float] | None:
    """The binary's "Inference timings in us: ..." line in one invocation's output, in us."""
    match = None
    for match in _TIMINGS.finditer(text):
        pass
    if match is None:
        return None
    init, first, warmup, inference = (float(g) for g in match.groups())
    return {"init_us": init, "first_inference_us": first, "warmup_avg_us": warmup,
            "inference_avg_us": inference}


def job_timings(texts: Sequence[str], n_samples: int, transfer: Transfer) -> Timings:
    """per_batch_s (each batch's single inference), init_s per invocation, latency, host times."""
    parsed = [parse_timings(t) for t in texts]
    found = [p for p in parsed if p is not None]
    per_batch_s = tuple(round(p["inference_avg_us"] / 1e6, 7) for p in found)
    invoke_s = float(round(sum(per_batch_s), 6))
    complete = found and len(found) == len(parsed) and all(np.isfinite(per_batch_s))
    return Timings(invocations=len(texts), host_push_s=round(transfer.push_s, 6),
                   host_run_s=round(transfer.run_s, 6), host_pull_s=round(transfer.pull_s, 6),
                   per_batch_s=per_batch_s,
                   init_s=tuple(round(p["init_us"] / 1e6, 6) for p in found),  # load + delegate + allocate
                   invoke_s=invoke_s, timing_lines_missing=(len(parsed) - len(found)) or None,
                   latency_ms_per_sample=1000.0 * invoke_s / n_samples if complete and n_samples else None)


def parse_delegate_log(texts: Sequence[str], spec: str) -> tuple[ExecutionPlan, str]:
    """(execution_plan, delegate_applied) from the invocations' outputs (the registrar's lines).

    The first invocation with a registrar statement decides: "completely" is one partition and
    the whole graph; "partially ... w/ N delegate kernels" is N partitions; "will not be executed"
    and no statement at all (no delegate applied explicitly) are 0 partitions, delegate "none".
    """
    if not texts:
        return ExecutionPlan(available=False, source=PLAN_SOURCE, log_lines=()), "unknown"
    lines: list[str] = []
    statements: list[re.Match] | None = None
    for text in texts:
        found = []
        for line in (raw.strip() for raw in text.splitlines()):
            match = _APPLIED.search(line) or _NOT_APPLIED.search(line)
            if match:
                found.append(match)
            if (match or _DELEGATE_WORDS.search(line)) and line not in lines and len(lines) < MAX_LOG_LINES:
                lines.append(line)
        if statements is None and found:
            statements = found
    applied = [m for m in statements or [] if m.re is _APPLIED]
    partitions = sum(1 if m.group("how") == "completely" else int(m.group("kernels") or 0) for m in applied)
    fully = any(m.group("how") == "completely" for m in applied)
    plan = ExecutionPlan(available=True, source=PLAN_SOURCE, delegate_partitions=partitions,
                         fully_delegated=fully, log_lines=tuple(lines))
    return plan, (applied_name(spec) if partitions else "none")


def runtime_version(log_text: str, binary_sha256: str | None = None) -> str:
    """The stand-in names its runtime; a real binary prints no version, so its sha256 (from the
    host's copy) identifies it; a version line if one is printed; else "unknown"."""
    standin = _STANDIN_RUNTIME.search(log_text)
    if standin:
        return f"stand-in on {standin.group(1)} {standin.group(2)}"
    version = _VERSION.search(log_text)
    if version:
        return version.group(1) + (f" (sha256 {binary_sha256})" if binary_sha256 else "")
    return f"sha256:{binary_sha256}" if binary_sha256 else "unknown"


def failure_stage(text: str) -> str:
    """The error kind (as the Python runner's) a failing invocation's output points to."""
    if re.search(r"Failed to (?:apply|load delegate)|has no \S+ delegate", text):
        return "delegate"
    if "Failed to allocate tensors" in text:
        return "prepare"
    if re.search(r"Failed to (?:load model|initialize the interpreter)", text):
        return "model_load"
    if re.search(r"The size of .* bytes|input_layer|Input tensor #", text):
        return "input"
    return "invoke"


def failed_batch(stdout: str) -> tuple[int, int] | None:
    """(batch index, exit status) of the job script's "QSKEW-BATCH-FAILED" line, or None."""
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == FAILED_MARK and parts[1].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def why_failed(text: str, tail_chars: int) -> str:
    """A failing invocation's ERROR/FATAL lines first (what went wrong), then its log's tail."""
    errors = [line.strip() for line in (text or "").splitlines()
              if line.startswith(("ERROR:", "FATAL:"))]
    return ("; ".join(errors) + "\n" if errors else "") + "log: " + tail(text, tail_chars)
