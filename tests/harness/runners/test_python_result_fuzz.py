"""Fuzz: whatever a device's runner leaves in result.json and outputs.npy, the host's result parser
(``harness.runners.python.pull_outcome`` then ``build_run``) raises only qskew's own errors.

result.json is checked field by field (``harness.runners.result_check``) before anything reads it,
so a missing or retyped field, any JSON value, raw bytes or an empty outputs.npy is one RunnerError
naming the device and the file.

Each example is a result.json (valid results with fields dropped, retyped or replaced, any JSON
value, or raw bytes) and an outputs.npy (right, wrong shape/dtype, or garbage), served by a fake
target. Examples: ``QSKEW_FUZZ_EXAMPLES`` if set, else 10 000 when ``CI`` is set, else 300.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_runner import protocol
from harness.errors import QskewError
from harness.on_device import Transfer
from harness.records import GroupedDataset, ModelArtifact
from harness.runners.python import build_run, pull_outcome
from harness.targets.base import RemoteStat
from harness.targets.process import CommandResult

EXAMPLES = int(os.environ.get("QSKEW_FUZZ_EXAMPLES") or (10_000 if os.environ.get("CI") else 300))
N, K = 4, 3
JOB_DIR = "/jobs/fuzz"
TEST = GroupedDataset(name="fuzz", ids=np.array([f"s{i}" for i in range(N)]), x=np.zeros((N, 2), np.uint8),
                      y=np.arange(N) % K, group=np.array(["a", "b"] * (N // 2)), split=np.array(["test"] * N),
                      num_classes=K, description="fuzz")
ARTIFACT = ModelArtifact(variant="v", path=Path("/nonexistent.tflite"), sha256="0" * 64, size_bytes=1,
                         inputs=(), outputs=(), recipe={})


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


GOOD_OUTPUTS = _npy(np.zeros((N, K), np.float32))


def _good_result(outputs: bytes) -> dict:
    return {"protocol": protocol.PROTOCOL_VERSION, "status": "ok", "runtime": "ai_edge_litert",
            "runtime_version": "2.3.0", "delegate_applied": "xnnpack", "batch_size": N,
            "timings": {"per_batch_s": [0.01]}, "execution_plan": {},
            "output": {"file": "outputs.npy", "sha256": hashlib.sha256(outputs).hexdigest(), "dtype": "float32",
                       "scale": 0.0, "zero_point": 0}}


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
OUTPUT_KEYS = ("file", "sha256", "dtype", "scale", "zero_point")
TOP_KEYS = ("protocol", "status", "runtime", "runtime_version", "delegate_applied", "batch_size", "timings",
            "execution_plan", "output", "error", "error_kind")


@st.composite
def device_files(draw) -> tuple[bytes, bytes]:
    """(result.json bytes, outputs.npy bytes) as a broken or hostile runner might leave them."""
    outputs = draw(st.sampled_from([GOOD_OUTPUTS, _npy(np.zeros((N, K), np.int8)), _npy(np.zeros((N - 1, K))),
                                    _npy(np.zeros((N,), np.float32)), _npy(np.zeros((N, K + 1), np.float32)),
                                    b"", b"\x93NUMPY garbage"]) | st.binary(max_size=64))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=64)), outputs
    if kind == 1:
        return json.dumps(draw(JSON_VALUES)).encode(), outputs
    result = _good_result(outputs)
    for _ in range(draw(st.integers(0, 3))):
        where = result if draw(st.booleans()) or not isinstance(result.get("output"), dict) else result["output"]
        key = draw(st.sampled_from(TOP_KEYS if where is result else OUTPUT_KEYS))
        if draw(st.booleans()):
            where.pop(key, None)
        else:
            where[key] = draw(JSON_VALUES)
    return json.dumps(result, allow_nan=True).encode(), outputs


class FilesTarget:
    """Just enough of a Target: a job folder holding result.json and outputs.npy."""

    name = "fuzz-device"
    workdir = "/"
    python = "python3"

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def stat(self, remote: str):
        data = self.files.get(remote)
        return None if data is None else RemoteStat(size_bytes=len(data), mode=0o100644, mtime=0)

    def pull(self, remote: str, local: Path) -> None:
        if remote not in self.files:
            from harness.errors import TargetError

            raise TargetError(f"pull {remote}: no such file", self.name)
        Path(local).write_bytes(self.files[remote])

    def sha256(self, remote: str):
        data = self.files.get(remote)
        return None if data is None else hashlib.sha256(data).hexdigest()

    def properties(self):
        return {"name": self.name}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
          report_multiple_bugs=False)
@given(device_files(), st.sampled_from([0, 1, 3]))
def test_any_result_files_raise_only_qskew_errors(files, exit_code):
    result_json, outputs = files
    target = FilesTarget({f"{JOB_DIR}/{protocol.DEFAULT_RESULT}": result_json, f"{JOB_DIR}/outputs.npy": outputs})
    proc = CommandResult(("python3", "run.py", JOB_DIR), exit_code, "runner said hi\n", "", 0.1)
    tmp = Path(tempfile.mkdtemp(prefix="qskew-fuzz-"))
    try:
        transfer = Transfer()
        outcome = pull_outcome(target, JOB_DIR, proc, tmp, transfer)
        build_run(target, ARTIFACT, TEST, "xnnpack", outcome, transfer, 0.1)
    except QskewError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
