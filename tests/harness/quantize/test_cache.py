"""The content-addressed variant cache: reruns convert nothing; keys follow their inputs."""

import pytest

from harness.quantize import cache
from harness.quantize.calibration import make_calibration
from harness.quantize.convert import convert, convert_all
from harness.quantize.options import QuantizeOptions


@pytest.fixture
def conversion_counter(monkeypatch):
    """Count real calls of the TFLite converter and of ai-edge-quantizer (they still run)."""
    from ai_edge_quantizer import quantizer
    from tensorflow.lite.python import lite

    calls = {"tflite": 0, "aeq": 0}

    def counting(method, name):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return method(self, *args, **kwargs)
        return wrapper

    for cls in (lite.TFLiteKerasModelConverterV2, lite.TFLiteSavedModelConverterV2):
        monkeypatch.setattr(cls, "convert", counting(cls.convert, "tflite"))
    monkeypatch.setattr(quantizer.Quantizer, "quantize",
                        counting(quantizer.Quantizer.quantize, "aeq"))
    return calls


def test_second_convert_all_converts_nothing(tiny_cnn, calibration, artifacts, variant_cache,
                                             conversion_counter):
    before = {name: a.path.stat().st_mtime_ns for name, a in artifacts.items()}
    again = convert_all(tiny_cnn, "all", calibration, QuantizeOptions(check_batch_size=16),
                        variant_cache, progress=False)
    assert conversion_counter == {"tflite": 0, "aeq": 0}
    assert {a.variant: a.path.stat().st_mtime_ns for a in again} == before
    assert [(a.variant, a.path, a.sha256, a.recipe) for a in again] == [
        (a.variant, a.path, a.sha256, a.recipe) for a in artifacts.values()]
    assert all(a.ok for a in again)


def test_the_counter_sees_real_conversions(tiny_cnn, calibration, tmp_path, conversion_counter):
    convert_all(tiny_cnn, "dynamic,mixed", calibration, QuantizeOptions(), tmp_path,
                progress=False)
    # dynamic, then mixed = the fp32 base model + ai-edge-quantizer
    assert conversion_counter == {"tflite": 2, "aeq": 1}


def test_another_calibration_seed_gives_another_key(tiny_cnn, digits, calibration, artifacts,
                                                    variant_cache):
    other = make_calibration(digits, size=calibration.info.size, seed=calibration.info.seed + 1)
    assert other.info.sha256 != calibration.info.sha256
    int8 = convert(tiny_cnn, "int8", other, QuantizeOptions(), variant_cache)
    assert int8.ok and int8.path.parent != artifacts["int8"].path.parent
    # variants without calibration do not depend on it
    fp32 = convert(tiny_cnn, "fp32", other, QuantizeOptions(), variant_cache)
    assert fp32.path == artifacts["fp32"].path


def test_key_follows_request_calibration_and_versions(tiny_cnn):
    fingerprint = cache.model_fingerprint(tiny_cnn)
    versions = cache.tool_versions()
    base = cache.cache_key(fingerprint, "mixed", {"selection": {"n": 2}}, "c1", versions)
    assert base == cache.cache_key(fingerprint, "mixed", {"selection": {"n": 2}}, "c1", versions)
    assert base != cache.cache_key(fingerprint, "mixed", {"selection": {"n": 3}}, "c1", versions)
    assert base != cache.cache_key(fingerprint, "mixed", {"selection": {"n": 2}}, "c2", versions)
    newer = {**versions, "tensorflow": "9.9.9"}
    assert base != cache.cache_key(fingerprint, "mixed", {"selection": {"n": 2}}, "c1", newer)
    assert len(base) == 64 and int(base, 16) >= 0


def test_fingerprint_changes_with_the_weights(tiny_cnn):
    import keras

    clone = keras.models.clone_model(tiny_cnn)
    clone.set_weights(tiny_cnn.get_weights())
    assert cache.model_fingerprint(tiny_cnn) == cache.model_fingerprint(tiny_cnn)
    weights = clone.get_weights()
    weights[-1] = weights[-1] + 1e-3
    clone.set_weights(weights)
    assert cache.model_fingerprint(clone) != cache.model_fingerprint(tiny_cnn)


def test_a_corrupted_cache_entry_is_converted_again(tiny_cnn, calibration, tmp_path,
                                                    conversion_counter):
    first = convert(tiny_cnn, "float16", None, QuantizeOptions(), tmp_path)
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])  # a truncated cache file
    again = convert(tiny_cnn, "float16", None, QuantizeOptions(), tmp_path)
    assert again.ok and again.path == first.path and again.sha256 == first.sha256
    assert again.path.read_bytes() == data and conversion_counter["tflite"] == 2
