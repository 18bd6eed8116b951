"""harness/runners/benchmark_model_log.py: delegate flags, and reading the binary's log (timings,
delegates).

The log texts below follow benchmark_model's own wording (tflite/tools/benchmark/
benchmark_tflite_model.cc and benchmark_model.cc, read with the search tool).
"""

import math

import pytest

from harness.on_device import Transfer
from harness.records import ExecutionPlan
from harness.runners import benchmark_model_log as bm
from harness.errors import ConfigError


@pytest.mark.parametrize("spec, flags", [
    ("xnnpack", ("--use_xnnpack=true",)),
    ("builtin", ("--use_xnnpack=false",)),
    ("gpu", ("--use_gpu=true", "--gpu_precision_loss_allowed=true", "--use_xnnpack=false")),
    ("gpu-fp32", ("--use_gpu=true", "--gpu_precision_loss_allowed=false", "--use_xnnpack=false")),
    ("hexagon", ("--use_hexagon=true", "--use_xnnpack=false")),
    ("nnapi", ("--use_nnapi=true", "--use_xnnpack=false")),
    ("nnapi:qti-dsp", ("--use_nnapi=true", "--nnapi_accelerator_name=qti-dsp", "--use_xnnpack=false")),
    ("external:/vendor/lib/libfoo.so",
     ("--use_xnnpack=false", "--external_delegate_path=/vendor/lib/libfoo.so")),
    ("external:/d/libfoo.so,cache=1,mode=fast",
     ("--use_xnnpack=false", "--external_delegate_path=/d/libfoo.so",
      "--external_delegate_options=cache:1;mode:fast")),
    ("edgetpu", ("--use_xnnpack=false", "--external_delegate_path=libedgetpu.so.1")),
    ("edgetpu:usb", ("--use_xnnpack=false", "--external_delegate_path=libedgetpu.so.1",
                     "--external_delegate_options=device:usb")),
])
def test_delegate_flags(spec, flags):
    assert bm.delegate_flags(spec) == flags


def test_reference_kernels_have_no_flag_and_builtin_is_named_instead():
    with pytest.raises(bm.UnsupportedDelegate, match="reference kernels") as err:
        bm.delegate_flags("reference")
    assert "`builtin`" in str(err.value) and "closest CPU baseline" in str(err.value)


def test_options_the_registrar_would_split_are_refused():
    # "device:usb:0" splits in three and the registrar silently drops it
    with pytest.raises(bm.UnsupportedDelegate, match="usb:0"):
        bm.delegate_flags("edgetpu:usb:0")
    with pytest.raises(bm.UnsupportedDelegate, match="exactly key:value"):
        bm.delegate_flags("external:/x.so,a=b;c")


def test_a_malformed_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown delegate"):
        bm.delegate_flags("tpu")


def test_applied_names_match_what_signoff_compares():
    assert bm.applied_name("xnnpack") == "xnnpack"
    assert bm.applied_name("external:/d/libfoo.so,cache=1") == "external:/d/libfoo.so"
    assert bm.applied_name("nnapi:qti-dsp") == "nnapi:qti-dsp"
    assert bm.applied_name("edgetpu:usb") == "edgetpu"


LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [0d1f.tflite]
INFO: Loaded model 0d1f.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
INFO: The input model file size (MB): 4.21
INFO: Initialized session in 151.2ms.
INFO: Running benchmark for at least 0 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=0
INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1234567
INFO: Inference timings in us: Init: 151200, First inference: 0, Warmup (avg): 0, Inference (avg): 1.23457e+06
"""


def test_split_log_and_timings():
    text = (f"{bm.BATCH_MARK} 0\n{LOG}{bm.EXIT_MARK} 0 0\n"
            f"{bm.BATCH_MARK} 1\nFATAL: The size of x.raw is 3 bytes. It should be 4 bytes.{bm.EXIT_MARK} 1 134\n")
    sections = bm.split_log(text)
    assert [(i, rc) for i, rc, _ in sections] == [(0, 0), (1, 134)]
    assert sections[1][2] == "FATAL: The size of x.raw is 3 bytes. It should be 4 bytes."
    t = bm.parse_timings(sections[0][2])
    assert t == {"init_us": 151200.0, "first_inference_us": 0.0, "warmup_avg_us": 0.0,
                 "inference_avg_us": 1234570.0}
    assert bm.parse_timings(sections[1][2]) is None
    assert bm.failure_stage(sections[1][2]) == "input"


def test_timings_accept_nan_and_feed_latency():
    nan_line = "INFO: Inference timings in us: Init: 10, First inference: 5, Warmup (avg): nan, Inference (avg): 250"
    assert math.isnan(bm.parse_timings(nan_line)["warmup_avg_us"])
    timings = bm.job_timings([LOG, nan_line], 100, Transfer())
    assert timings.per_batch_s == (1.23457, 0.00025) and timings.invocations == 2
    assert timings.latency_ms_per_sample == pytest.approx(1000 * (1.23457 + 0.00025) / 100)
    assert timings.timing_lines_missing is None and "timing_lines_missing" not in timings.to_json()
    missing = bm.job_timings([LOG, "INFO: no timing here"], 100, Transfer())
    assert missing.timing_lines_missing == 1 and missing.latency_ms_per_sample is None
    # what the summary entry stores: the keys the runner always wrote, latency null when unknown
    assert missing.to_json() == {"invocations": 2, "init_s": [0.1512], "invoke_s": 1.23457, "per_batch_s": [1.23457],
                                 "timing_lines_missing": 1, "host_push_s": 0.0, "host_run_s": 0.0,
                                 "host_pull_s": 0.0, "latency_ms_per_sample": None}


@pytest.mark.parametrize("line, partitions, fully, applied", [
    ("INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.",
     1, True, "xnnpack"),
    ("INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.",
     3, False, "xnnpack"),
    ("INFO: Though XNNPACK delegate is explicitly applied, the model graph will not be executed by the delegate.",
     0, False, "none"),
    ("INFO: Loaded model m.tflite", 0, False, "none"),  # no delegate applied explicitly
])
def test_delegate_log(line, partitions, fully, applied):
    plan, name = bm.parse_delegate_log([line + "\n", line + "\n"], "xnnpack")
    lines = [line] if "delegate" in line else []
    assert plan == ExecutionPlan(available=True, source="benchmark_model log", delegate_partitions=partitions,
                                 fully_delegated=fully, log_lines=tuple(lines))
    assert plan.to_json() == {"available": True, "source": "benchmark_model log", "delegate_partitions": partitions,
                              "fully_delegated": fully, "log_lines": lines}
    assert name == applied


def test_delegate_log_of_nothing_is_unknown():
    plan, name = bm.parse_delegate_log([], "xnnpack")
    assert plan.available is False and plan.delegate_partitions is None and name == "unknown"


def test_placement_reads_the_plan_as_a_whole_graph_statement():
    from harness.placement import placement_rows

    plan, _ = bm.parse_delegate_log([LOG], "xnnpack")
    (row,) = placement_rows(("int8", "phone", "xnnpack"), plan)
    assert row["source"] == "benchmark_model log" and row["on"] == "partial" and row["count"] == 3


def test_runtime_version():
    assert bm.runtime_version("INFO: qskew benchmark_model stand-in (not TFLite's binary): runtime "
                              "ai_edge_litert 2.3.0\n") == "stand-in on ai_edge_litert 2.3.0"
    assert bm.runtime_version(LOG) == "unknown"
    assert bm.runtime_version(LOG, "ab12") == "sha256:ab12"  # the binary prints no version


# The real binary's words when it cannot create a delegate and runs on the CPU with exit 0
# (gpu_delegate_provider.cc 205-207, nnapi 242-246, hexagon 96-100, external_delegate.cc 47-50).
REAL_FALLBACK = {
    "gpu": "WARN: GPU acceleration is unsupported on this platform.",
    "gpu-fp32": "WARN: GPU acceleration is unsupported on this platform.",
    "nnapi": "WARN: NNAPI acceleration is unsupported on this platform.",
    "hexagon": "WARN: Could not create Hexagon delegate: platform may not support delegate or "
               "required libraries are missing",
    "external:/v/libx.so": "INFO: Unable to load external delegate from : /v/libx.so",
}
CPU_RUN = ("INFO: Initialized session in 3.2ms.\n"
           "INFO: Inference timings in us: Init: 3200, First inference: 90, Warmup (avg): 90, "
           "Inference (avg): 85\n")


@pytest.mark.parametrize("spec", sorted(REAL_FALLBACK))
def test_the_real_binarys_silent_fallback_is_caught_quoting_its_warning(spec):
    text = "INFO: STARTING!\n" + REAL_FALLBACK[spec] + "\n" + CPU_RUN
    why = bm.unconfirmed_delegate([text], spec)
    assert why is not None and REAL_FALLBACK[spec].split(": ", 1)[1] in why
    applied = (f"INFO: Explicitly applied {bm.REGISTRAR_NAMES[spec.split(':')[0]]} delegate, and the "
               f"model graph will be completely executed by the delegate.\n")
    assert bm.unconfirmed_delegate([applied + CPU_RUN], spec) is None
    assert bm.unconfirmed_delegate([applied + CPU_RUN, text], spec) is not None  # every invocation


def test_no_delegate_to_confirm_for_builtin_and_a_not_executed_graph_is_not_confirmed():
    assert bm.unconfirmed_delegate([CPU_RUN], "builtin") is None
    text = "INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate.\n"
    assert "will not be executed" in bm.unconfirmed_delegate([text + CPU_RUN], "gpu")


def test_a_binary_before_tf_2_10_is_recognised_by_its_unconsumed_output_flag():
    assert bm.too_old_for_outputs("WARN: Unconsumed cmdline flags: --output_filepath=/j/out/0.bin\n")
    assert not bm.too_old_for_outputs("WARN: Unconsumed cmdline flags: --foo=1\n" + CPU_RUN)


def test_precision_is_recorded_from_the_flags():
    assert bm.precision_flag("gpu") == {"requested": "fp16", "reported": "unknown"}
    assert bm.precision_flag("gpu-fp32")["requested"] == "fp32"
    assert bm.precision_flag("xnnpack") == {"requested": "model", "reported": "model"}


@pytest.mark.parametrize("text, stage", [
    ("ERROR: Failed to apply GPU delegate.\nERROR: Benchmarking failed.", "delegate"),
    ("ERROR: Failed to load delegate from /x.so: nope", "delegate"),
    ("ERROR: Failed to allocate tensors!", "prepare"),
    ("ERROR: Failed to load model m.tflite", "model_load"),
    ("ERROR: Node number 3 (CONV_2D) failed to invoke.", "invoke"),
])
def test_failure_stage(text, stage):
    assert bm.failure_stage(text) == stage
