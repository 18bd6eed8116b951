"""harness/evaluate.py: the fixed-batch copies GPU and cpu-compiled jobs run (static_variants)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import config
from harness.evaluate import static_variants


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


def experiment(delegates, fixed_batch=0):
    return config.from_dict({"quantize": {"variants": ["fp32", "float16"], "fixed_batch": fixed_batch},
                             "run": {"delegates": delegates, "batch_size": 8}})


VARIANTS = [SimpleNamespace(variant="fp32", ok=True), SimpleNamespace(variant="float16", ok=True),
            SimpleNamespace(variant="int8", ok=False)]  # a variant that failed gets no copy


def test_gpu_jobs_get_fixed_batch_copies_converted_once_then_cached(model, tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    said = []
    copies = static_variants(experiment(["xnnpack", "gpu"]), model, None, VARIANTS, said.append)
    assert sorted(copies) == ["float16", "fp32"] and all(a.ok for a in copies.values())
    for art in copies.values():
        assert art.inputs[0].shape_signature[0] == 8 and art.recipe["fixed_batch"] == 8
    assert said == ["fixed-batch (8) copies for the CompiledModel jobs: fp32, float16"]
    stamps = {v: a.path.stat().st_mtime_ns for v, a in copies.items()}
    again = static_variants(experiment(["gpu-fp32", "cpu-compiled"]), model, None, VARIANTS)
    assert {v: a.path for v, a in again.items()} == {v: a.path for v, a in copies.items()}
    assert {v: a.path.stat().st_mtime_ns for v, a in again.items()} == stamps  # from the cache


def test_no_copies_without_such_a_delegate_or_when_the_variants_are_fixed_already(model, tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    assert static_variants(experiment(["xnnpack", "reference"]), model, None, VARIANTS) == {}
    assert static_variants(experiment(["gpu"], fixed_batch=4), model, None, VARIANTS) == {}
    assert not (tmp_path / "cache").exists()


def test_a_converter_error_is_short_in_the_artifact_and_whole_in_the_run_directory(tmp_path, monkeypatch):
    from harness.evaluate import ERRORS_DIR, with_error_files
    from harness.quantize.convert import convert_all
    from support.custom_op import CUSTOM_OP, determinant_model

    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path / "cache"))
    built = convert_all(determinant_model(), ["fp32"], None, cache_dir=tmp_path / "cache", progress=False)
    (art,) = with_error_files(tmp_path / "run", built)
    whole = tmp_path / "run" / ERRORS_DIR / "fp32.txt"
    assert art.error.endswith(f"(whole converter output: {whole})") and CUSTOM_OP in art.error
    assert len(art.error) < 1000 and whole.read_text().strip() == built[0].error_detail
    assert "func.func" in whole.read_text()
