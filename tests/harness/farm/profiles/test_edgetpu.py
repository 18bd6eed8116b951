"""harness.farm.profiles.edgetpu and edgetpu_compiler: the Edge TPU's rules read from real .tflite files, the compiler's log, and the
compile/precompiled paths (with the FAKE edgetpu_compiler: the real one cannot be installed here)."""

import dataclasses
import os
import re

import pytest

from harness.farm.profiles import edgetpu, edgetpu_compiler
from harness.errors import ArtifactError

# A compiler log in the real format (layout of `edgetpu_compiler` 16.0's <stem>_edgetpu.log, with
# statuses documented by Coral); one op appears on two rows, as happens when the graph is cut.
REAL_FORMAT_LOG = """Edge TPU Compiler version 16.0.384591198
Input: models/classifier_int8.tflite
Output: out/classifier_int8_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        12         Mapped to Edge TPU
DEPTHWISE_CONV_2D              6          Mapped to Edge TPU
MEAN                           1          Operation is otherwise supported, but not mapped due to some unspecified limitation
FULLY_CONNECTED                1          More than one subgraph is not supported
QUANTIZE                       1          Mapped to Edge TPU
QUANTIZE                       1          Operation is working on an unsupported data type
"""

# What `edgetpu_compiler -s` prints on stdout: the summary, then the same table.
SHOW_OPERATIONS_STDOUT = """Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 412 ms.

Input model: m.tflite
Input size: 24.55KiB
Output model: m_edgetpu.tflite
Output size: 61.20KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 5
Operation log: m_edgetpu.log
See the operation log file for individual operation details.

Operator                       Count      Status

RESHAPE                        1          Mapped to Edge TPU
FULLY_CONNECTED                2          Mapped to Edge TPU
CONV_2D                        1          Mapped to Edge TPU
SOFTMAX                        1          Operation version not supported
"""


def test_parse_log_reads_every_row_of_the_operator_table():
    ops = edgetpu_compiler.parse_log(REAL_FORMAT_LOG)
    assert [(o.op, o.count, o.mapped) for o in ops] == [
        ("CONV_2D", 12, True), ("DEPTHWISE_CONV_2D", 6, True), ("MEAN", 1, False),
        ("FULLY_CONNECTED", 1, False), ("QUANTIZE", 1, True), ("QUANTIZE", 1, False)]
    assert ops[2].status == ("Operation is otherwise supported, but not mapped due to some "
                             "unspecified limitation")
    report = edgetpu_compiler.CompileReport(source="edgetpu_compiler", compiler_version="16.0.384591198",
                                   ops=ops, input_sha256="0" * 64, path=None)
    assert (report.mapped_ops, report.total_ops) == (19, 22)
    assert report.to_json()["ops"][3] == {"op": "FULLY_CONNECTED", "count": 1,
                                          "status": "More than one subgraph is not supported"}


def test_parse_log_and_version_from_show_operations_output():
    ops = edgetpu_compiler.parse_log(SHOW_OPERATIONS_STDOUT)
    assert [(o.op, o.count) for o in ops] == [("RESHAPE", 1), ("FULLY_CONNECTED", 2), ("CONV_2D", 1),
                                              ("SOFTMAX", 1)]
    assert sum(o.count for o in ops if o.mapped) == 4
    assert edgetpu_compiler.parse_version(SHOW_OPERATIONS_STDOUT) == "15.0.340273435"
    assert edgetpu_compiler.parse_version("no version here") == "" and edgetpu_compiler.parse_log("") == ()


@pytest.mark.parametrize("variant, expected", [
    ("int16x8", "16-bit activations (int16 outputs of "),
    ("mixed", "mixed 8/16-bit model: FULLY_CONNECTED x2 compute with 16-bit activations"),
    ("fp32", "float computation (float outputs of CONV_2D x1"),
    ("dynamic", "float computation (float outputs of "),
    ("float16", "float16 tensor(s)"),
    ("int8", "dynamic batch dimension (input "),
])
def test_refusal_of_each_dynamic_batch_variant_says_why(dynamic_variants, variant, expected):
    why = edgetpu.refusal(dynamic_variants[variant].path)
    assert why is not None and expected in why, why
    if variant in ("int16x8", "mixed"):
        assert why.endswith("the Edge TPU runs 8-bit integer models only")
    if variant in ("fp32", "dynamic", "float16"):
        # Keras numbers its tensors per process: the input's name depends on what ran before
        assert re.search(r"input 'serving_default_keras_tensor(_\d+)?:0' is float32", why), why
        assert "use the int8 variant" in why
    if variant == "int8":
        assert "[-1, 8, 8, 1]" in why and "fixed_batch = 1" in why


def test_fixed_batch_int8_is_accepted_and_16_bit_ones_still_refused(fixed_variants):
    assert edgetpu.refusal(fixed_variants["int8"].path) is None
    assert "16-bit activations" in edgetpu.refusal(fixed_variants["int16x8"].path)
    assert "mixed 8/16-bit" in edgetpu.refusal(fixed_variants["mixed"].path)


def test_refusal_reads_the_model_not_its_name(dynamic_variants, fixed_variants, copy_of):
    disguised = copy_of(dynamic_variants["int16x8"], name="int8.tflite")
    assert "16-bit activations" in edgetpu.refusal(disguised.path)
    assert edgetpu.refusal(copy_of(fixed_variants["int8"], name="mixed.tflite").path) is None


def test_a_batch_other_than_1_is_refused(tiny_keras, tiny_data, tmp_path):
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert
    from harness.quantize.options import QuantizeOptions

    calib = make_calibration(tiny_data, size=16, seed=0)
    int8 = convert(tiny_keras, "int8", calib, QuantizeOptions(fixed_batch=4), tmp_path)
    assert int8.ok, int8.error
    why = edgetpu.refusal(int8.path)
    assert why.startswith("batch 4 (input ") and "[4, 8, 8, 1]" in why and "fixed_batch = 1" in why


def test_refusal_of_a_file_that_is_no_model(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ArtifactError, match="junk.tflite is not a readable TFLite flatbuffer"):
        edgetpu.refusal(junk)


def test_compile_with_the_fake_compiler_records_version_and_ops_and_is_cached(
        fixed_variants, copy_of, fake_compiler, edgetpu_cache):
    int8 = copy_of(fixed_variants["int8"])
    report = edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert report.source == "edgetpu_compiler" and report.compiler_version == "16.0.0-fake"
    assert [(o.op, o.count) for o in report.ops] == [("CONV_2D", 1), ("RESHAPE", 1),
                                                    ("FULLY_CONNECTED", 2)]
    assert report.mapped_ops == report.total_ops == 4
    assert report.path.is_relative_to(edgetpu_cache / "edgetpu" / int8.sha256)
    assert report.path.read_bytes() == int8.path.read_bytes()  # the fake copies: no real compile
    again = edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert again == report
    compiles = [c for c in fake_compiler.read_text().splitlines() if "--version" not in c]
    assert len(compiles) == 1 and compiles[0].startswith("-s -o ")


def test_ops_the_compiler_leaves_on_the_cpu_are_counted(fixed_variants, copy_of, fake_compiler,
                                                        edgetpu_cache, monkeypatch):
    monkeypatch.setenv("FAKE_EDGETPU_UNMAPPED", "RESHAPE")
    int8 = copy_of(fixed_variants["int8"])
    report = edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert (report.mapped_ops, report.total_ops) == (3, 4)
    assert [o.status for o in report.ops if o.op == "RESHAPE"] == [edgetpu_compiler.parse_log(
        "Operator Count Status\nX 1 Operation is otherwise supported, but not mapped due to some "
        "unspecified limitation")[0].status]


def test_a_compiler_failure_is_an_artifact_error_with_its_output(fixed_variants, copy_of,
                                                                 fake_compiler, edgetpu_cache,
                                                                 monkeypatch):
    monkeypatch.setenv("FAKE_EDGETPU_FAIL", "Model not quantized")
    int8 = copy_of(fixed_variants["int8"])
    with pytest.raises(ArtifactError) as err:
        edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert "edgetpu_compiler 16.0.0-fake could not compile" in str(err.value)
    assert "exit 1" in str(err.value) and "Model not quantized" in str(err.value)
    failed = edgetpu_compiler.prepare(int8, device="coral-bench")
    assert not failed.ok and failed.error.startswith("device coral-bench (edgetpu): variant 'int8': ")
    assert failed.path == int8.path  # nothing compiled replaces it


def test_a_precompiled_model_beside_the_variant_wins_over_the_compiler(
        fixed_variants, copy_of, fake_compiler, edgetpu_cache):
    int8 = copy_of(fixed_variants["int8"])
    beside = int8.path.with_name("int8_edgetpu.tflite")
    beside.write_bytes(int8.path.read_bytes())
    beside.with_suffix(".log").write_text(REAL_FORMAT_LOG)
    report = edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert report.source == "precompiled" and report.path == beside
    assert report.compiler_version == "16.0.384591198" and report.total_ops == 22
    assert not fake_compiler.exists()  # the compiler was not even asked its version


def test_a_precompiled_model_in_the_env_folder_is_found_by_sha256(fixed_variants, copy_of,
                                                                  no_compiler, tmp_path, monkeypatch):
    int8 = copy_of(fixed_variants["int8"])
    folder = tmp_path / "compiled"
    folder.mkdir()
    target = folder / f"{int8.sha256[:16]}_edgetpu.tflite"
    target.write_bytes(int8.path.read_bytes())
    monkeypatch.setenv("QSKEW_EDGETPU_MODELS", str(folder))
    report = edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    assert report.source == "precompiled" and report.path == target
    assert report.ops is None and report.mapped_ops is None and report.compiler_version == ""


def test_no_compiler_and_no_precompiled_model_says_what_is_missing(fixed_variants, copy_of,
                                                                   no_compiler):
    int8 = copy_of(fixed_variants["int8"])
    with pytest.raises(ArtifactError) as err:
        edgetpu_compiler.edgetpu_model(int8.path, int8.sha256)
    message = str(err.value)
    assert "edgetpu_compiler is not on the PATH" in message
    assert str(int8.path.with_name("int8_edgetpu.tflite")) in message
    assert f"$QSKEW_EDGETPU_MODELS to a folder holding {int8.sha256[:16]}_edgetpu.tflite" in message


def _with_edgetpu_custom_op(src, dst):
    """``src`` with its first operator turned into an ``edgetpu-custom-op`` (as a compiled model has)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(src)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = edgetpu.CUSTOM_OP
    code.version = 1
    model.operatorCodes.append(code)
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1
    fb.write_model(model, str(dst))


def test_a_compiled_model_the_host_cannot_open_gets_its_io_from_the_flatbuffer(fixed_variants, tmp_path):
    from harness.quantize.inspect import check_prepares

    int8 = fixed_variants["int8"]
    compiled = tmp_path / "int8_edgetpu.tflite"
    _with_edgetpu_custom_op(int8.path, compiled)
    with pytest.raises(ArtifactError, match="unresolved custom op: edgetpu-custom-op"):
        check_prepares(compiled, 1)  # what artifact_of would have recorded as the error
    report = edgetpu_compiler.CompileReport(source="precompiled", compiler_version="", ops=None,
                                   input_sha256=int8.sha256, path=compiled)
    art = edgetpu_compiler.compiled_artifact(int8, report)
    assert art.ok and art.path == compiled and art.sha256 != int8.sha256
    assert art.inputs == int8.inputs and art.outputs == int8.outputs
    assert art.recipe["edgetpu"]["source"] == "precompiled" and art.recipe["fixed_batch"] == 1
    assert art.calibration == int8.calibration


def test_prepare_returns_the_compiled_artifact_with_the_recipe(fixed_variants, copy_of, fake_compiler,
                                                               edgetpu_cache):
    int8 = copy_of(fixed_variants["int8"])
    lines = []
    art = edgetpu_compiler.prepare(int8, device="coral-bench", echo=lines.append)
    assert art.ok, art.error
    assert art.variant == "int8" and art.path != int8.path and art.sha256 == int8.sha256  # a copy
    assert art.recipe["edgetpu"] == {
        "source": "edgetpu_compiler", "compiler_version": "16.0.0-fake", "mapped_ops": 4,
        "total_ops": 4, "input_sha256": int8.sha256,
        "ops": [{"op": "CONV_2D", "count": 1, "status": "Mapped to Edge TPU"},
                {"op": "RESHAPE", "count": 1, "status": "Mapped to Edge TPU"},
                {"op": "FULLY_CONNECTED", "count": 2, "status": "Mapped to Edge TPU"}]}
    assert {k: v for k, v in art.recipe.items() if k != "edgetpu"} == dict(int8.recipe)
    assert lines == ["  int8 on coral-bench: Edge TPU model from edgetpu_compiler 16.0.0-fake "
                     "(4/4 ops mapped to the Edge TPU)"]
    assert dataclasses.replace(art, path=None, sha256=None, recipe={}) == \
        dataclasses.replace(int8, path=None, sha256=None, recipe={})
    assert os.access(art.path, os.R_OK)
