"""A runner's result.json is checked before the host reads it: one RunnerError naming the device
and the file for anything truncated, malformed or of the wrong types."""

import json

import numpy as np
import pytest

from harness.errors import RunnerError
from harness.runners.result_check import check_result

REMOTE = "/data/local/tmp/qskew/jobs/ab12/result.json"
GOOD = {"protocol": "1.3", "status": "ok", "error": None, "error_kind": None, "runtime": "ai_edge_litert",
        "runtime_version": "2.3.0", "delegate_applied": "xnnpack", "batch_size": 64, "n_samples": 150,
        "output": {"file": "outputs.npy", "dtype": "int8", "shape": [150, 10], "scale": 0.0059,
                   "zero_point": 13, "sha256": "9f2c"},
        "timings": {"invoke_s": 0.1, "per_batch_s": [0.03, 0.03, 0.04]}, "execution_plan": {"available": True}}


def _raises(data: bytes, match: str):
    with pytest.raises(RunnerError) as err:
        check_result(data, REMOTE, "pixel7")
    assert str(err.value).startswith("[pixel7] runner wrote an unusable " + REMOTE)
    assert match in str(err.value)


def test_a_good_result_comes_back_as_is():
    assert check_result(json.dumps(GOOD).encode(), REMOTE, "pixel7") == GOOD
    error = {"protocol": "1.3", "status": "error", "error": "boom", "error_kind": "invoke"}
    assert check_result(json.dumps(error).encode(), REMOTE, "pixel7") == error


@pytest.mark.parametrize("change, match", [
    ({"status": "done"}, "status 'done'"),
    ({"output": None}, "status ok but no output"),
    ({"batch_size": "64"}, "batch_size is str '64', expected int or null"),
    ({"batch_size": True}, "batch_size is bool"),
    ({"timings": [1, 2]}, "timings is list"),
    ({"timings": {"per_batch_s": ["x"]}}, "per_batch_s is not a list of numbers"),
    ({"output": {**GOOD["output"], "file": "../../etc/passwd"}}, "is not a file name in the job folder"),
    ({"output": {**GOOD["output"], "scale": "0.5"}}, "output.scale is str"),
    ({"output": {k: v for k, v in GOOD["output"].items() if k != "dtype"}}, "no output.dtype"),
    ({"protocol": 1.3}, "protocol is float"),
])
def test_wrong_fields_are_named(change, match):
    _raises(json.dumps({**GOOD, **change}).encode(), match)


def test_an_infinite_scale_is_refused():
    _raises(json.dumps({**GOOD, "output": {**GOOD["output"], "scale": float("inf")}}).encode(), "not a finite")


def test_another_protocol_is_left_to_the_callers_mismatch_error():
    other = {"protocol": "2.0", "status": "finished", "outputs": []}
    assert check_result(json.dumps(other).encode(), REMOTE, "pixel7", lambda v: v.startswith("1.")) == other


@pytest.mark.parametrize("data, match", [
    (b"", "not JSON"), (b"[1, 2]", "a JSON list"), (b"\xff\xfe", "not JSON"), (b"[" * 100_000, "not JSON"),
])
def test_unparseable_files_are_one_error(data, match):
    _raises(data, match)


def test_every_truncation_and_random_corruption_is_one_runner_error():
    """A seeded mutation fuzz: every prefix of a good file and 3000 random byte edits either parse
    to a checked result or raise RunnerError -- never another exception."""
    good = json.dumps(GOOD).encode()
    rng = np.random.default_rng(0)
    cases = [good[:i] for i in range(len(good))]
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        cases.append(bytes(data))
    for data in cases:
        try:
            result = check_result(data, REMOTE, "pixel7")
        except RunnerError:
            continue
        assert result["status"] in ("ok", "error")
