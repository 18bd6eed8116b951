"""device_runner.inference.to_model_input: the lookup-table path equals the direct float32 arithmetic."""

import numpy as np
import pytest

from device_runner import inference

PREPROCESS = [{"scale": 1 / 16, "offset": 0.0}, {"scale": 0.0123, "offset": -0.7}]
MODEL_INPUTS = [
    {"dtype": "float32", "scale": 0.0, "zero_point": 0},
    {"dtype": "int8", "scale": 0.0039, "zero_point": -128},
    {"dtype": "uint8", "scale": 0.0039, "zero_point": 0},
    {"dtype": "int16", "scale": 0.0001, "zero_point": 0},
]


@pytest.mark.parametrize("storage", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("preprocess", PREPROCESS)
@pytest.mark.parametrize("model_input", MODEL_INPUTS)
def test_table_lookup_is_bit_identical_to_arithmetic(storage, preprocess, model_input):
    info = np.iinfo(storage)
    x = np.random.default_rng(0).integers(info.min, info.max + 1, size=(500, 8, 8, 1)).astype(storage)
    fast = inference.to_model_input(x, preprocess, model_input)
    direct = inference._convert(x, preprocess, model_input)
    assert fast.dtype == direct.dtype == np.dtype(model_input["dtype"])
    assert np.array_equal(fast, direct)


def test_rounding_is_half_away_from_zero_and_clipped():
    x = np.array([0, 1, 2, 3, 250], dtype=np.uint8)
    out = inference.to_model_input(x, {"scale": 1.0, "offset": -1.5}, {"dtype": "int8", "scale": 1.0, "zero_point": 0})
    # -1.5 -> -2, -0.5 -> -1, 0.5 -> 1, 1.5 -> 2, 248.5 -> clipped to 127
    assert out.tolist() == [-2, -1, 1, 2, 127]


def test_float_storage_takes_the_arithmetic_path():
    x = np.array([[0.25, -1.0]], dtype=np.float32)
    out = inference.to_model_input(x, {"scale": 2.0, "offset": 0.0}, {"dtype": "float32", "scale": 0.0, "zero_point": 0})
    assert out.dtype == np.float32 and out.tolist() == [[0.5, -2.0]]


class _BufferInterpreter:
    """Just the input buffer of an interpreter: what the direct feeder writes into."""

    def __init__(self, shape, dtype):
        self.buffer = np.full(shape, 7, dtype=dtype)

    def tensor(self, index):
        return lambda: self.buffer


@pytest.mark.parametrize("storage", [np.uint8, np.uint16])
@pytest.mark.parametrize("preprocess", PREPROCESS + [{"scale": -1 / 255, "offset": 0.0}, {"scale": 3.0, "offset": 0.5}])
@pytest.mark.parametrize("model_input", MODEL_INPUTS)
@pytest.mark.parametrize("m", [16, 5])
@pytest.mark.parametrize("float_fill", inference.FLOAT_FILLS)
def test_direct_feeder_fills_the_bits_the_table_gives(storage, preprocess, model_input, m, float_fill,
                                                      monkeypatch):
    """The float32 path scales in place or gathers from the table, whichever the runner measured
    faster; integer inputs use the table: the same bits as the table path every input dtype used
    before (negative zero included); a short batch is padded with 0."""
    monkeypatch.setattr(inference, "FLOAT_FILL", float_fill)
    x = np.random.default_rng(1).integers(0, np.iinfo(storage).max + 1, size=(40, 4, 4, 3)).astype(storage)
    interp = _BufferInterpreter((16, 4, 4, 3), model_input["dtype"])
    feed = inference._direct_feeder(interp, x, preprocess, dict(model_input, index=0))
    feed(24, m)
    expected = inference.to_model_input(x[24:24 + m], preprocess, model_input)
    assert interp.buffer.dtype == expected.dtype
    assert interp.buffer[:m].tobytes() == expected.tobytes()
    assert not interp.buffer[m:].any()


def test_the_float_fill_is_measured_once_and_named(monkeypatch):
    monkeypatch.setattr(inference, "FLOAT_FILL", None)
    chosen = inference.measure_float_fill()
    assert chosen in inference.FLOAT_FILLS and inference.FLOAT_FILL == chosen
    x = np.zeros((2, 4), np.uint8)
    assert inference.conversion_name(x, {"dtype": "float32"}) == chosen
    assert inference.conversion_name(x, {"dtype": "int8"}) == "table"
    assert inference.conversion_name(x.astype(np.float32), {"dtype": "float32"}) == "chunk"
