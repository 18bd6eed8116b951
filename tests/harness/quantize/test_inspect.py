"""Reading .tflite files: I/O, op counts, the text table, and errors naming the file."""

import hashlib
import json
import shutil

import pytest

from harness.errors import ArtifactError
from harness.quantize.inspect import (check_prepares, format_model_info, inspect_model, list_ops,
                                      read_io)


def test_read_io_of_the_int8_model(artifacts):
    inputs, outputs = read_io(artifacts["int8"].path)
    assert [(t.dtype, t.shape_signature) for t in inputs] == [("int8", (-1, 8, 8, 1))]
    assert [(t.dtype, t.shape_signature) for t in outputs] == [("int8", (-1, 10))]
    assert inputs[0].quantized and outputs[0].scale > 0
    assert (inputs, outputs) == (artifacts["int8"].inputs, artifacts["int8"].outputs)


def test_inspect_model_counts_ops_by_output_dtype(artifacts):
    path = artifacts["int8"].path
    info = inspect_model(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == artifacts["int8"].sha256
    assert info.size_bytes == path.stat().st_size
    assert list(info.op_counts) == sorted(info.op_counts)
    counts = {(op, dt): n for op, dt, n in info.op_counts}
    assert counts[("CONV_2D", "int8")] == 2 and counts[("FULLY_CONNECTED", "int8")] == 2
    assert sum(n for _, _, n in info.op_counts) == len(list_ops(path))
    assert "float32" not in dict(info.tensor_dtypes)


def test_format_and_json(artifacts):
    info = inspect_model(artifacts["int8"].path)
    text = format_model_info(info)
    assert str(info.path) in text and "FULLY_CONNECTED" in text and "[?, 8, 8, 1]" in text
    assert "zero_point" in text and "int8" in text
    back = json.loads(json.dumps(info.to_json()))
    assert back["sha256"] == info.sha256 and back["inputs"][0]["dtype"] == "int8"
    assert {row["op"] for row in back["op_counts"]} >= {"CONV_2D", "FULLY_CONNECTED"}


def _broken(tmp_path, artifacts, kind):
    good = artifacts["fp32"].path.read_bytes()
    path = tmp_path / "model.tflite"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a flatbuffer at all" * 40)
    return path


@pytest.mark.parametrize("kind, message", [
    ("truncated", "is not a valid TFLite flatbuffer (truncated?): "),
    ("garbage", "is not a valid TFLite flatbuffer (truncated?): "),
    ("empty", "is empty (0 bytes)"),
    ("missing", "does not exist"),
])
@pytest.mark.parametrize("reader", [read_io, inspect_model, list_ops])
def test_unreadable_files_raise_artifact_error_naming_the_file(tmp_path, artifacts, kind, message,
                                                               reader):
    path = _broken(tmp_path, artifacts, kind)
    with pytest.raises(ArtifactError) as err:
        reader(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_check_prepares_resizes_a_dynamic_batch(artifacts, tmp_path):
    path = shutil.copy(artifacts["fp32"].path, tmp_path / "fp32.tflite")
    check_prepares(path, batch_size=7)  # no error: the fp32 model prepares at any batch
    with pytest.raises(ArtifactError, match="not a valid TFLite flatbuffer"):
        check_prepares(_broken(tmp_path, artifacts, "truncated"), batch_size=7)


def test_custom_ops_are_named_by_inspect_and_by_the_prepare_error(tmp_path, capsys):
    from harness.cli import main
    from support.custom_op import CUSTOM_OP, custom_op_tflite

    path = custom_op_tflite(tmp_path / "custom.tflite")
    info = inspect_model(path)
    assert info.custom_ops == (CUSTOM_OP,) and info.to_json()["custom_ops"] == [CUSTOM_OP]
    assert f"custom ops: {CUSTOM_OP} (not LiteRT builtins" in format_model_info(info)
    assert main(["inspect", str(path)]) == 0
    assert f"custom ops: {CUSTOM_OP}" in capsys.readouterr().out
    with pytest.raises(ArtifactError, match=f"it has custom op\\(s\\) {CUSTOM_OP}, which ai_edge_litert has no kernel"):
        check_prepares(path, 4)


def test_a_model_without_custom_ops_lists_none(artifacts):
    assert inspect_model(artifacts["int8"].path).custom_ops == ()
