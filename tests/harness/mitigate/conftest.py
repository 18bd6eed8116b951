"""Fixtures for the mitigate tests: the demo's data and model, one real ``mitigate`` run.

The run (``mitigation_run``) trains nothing new when the session's private cache already holds
small_cnn, starts the real QAT child process (tf_keras + tfmot, ~10 s on 2 cores), converts the
variants and runs them on the local target: ~30 s once per session, shared by the tests that
read its run directory.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    from harness import datasets

    return datasets.load("digits-groups")


@pytest.fixture(scope="session")
def demo_source(digits):
    """small_cnn trained with its own recipe, as ``qskew mitigate`` resolves it."""
    from harness.commands._common import model_source
    from harness.commands.mitigate import _experiment

    exp = _experiment(None)
    return exp, model_source(exp, digits, False, lambda s: None)


@pytest.fixture(scope="session")
def mitigation_run(tmp_path_factory, digits, demo_source):
    """``mitigate`` with default options on the demo, as the CLI would call it."""
    from harness.commands.mitigate import builtin_build
    from harness.mitigate.mitigate import mitigate
    from harness.mitigate.options import MitigationOptions

    exp, source = demo_source
    out = tmp_path_factory.mktemp("mitigate") / "run"
    result = mitigate(exp, digits, source, out, MitigationOptions(), progress=False, build=builtin_build(source))
    return result


@pytest.fixture(scope="session")
def tiny_keras3():
    """A small Keras 3 CNN for the digits (untrained: QAT starts from whatever weights it gets)."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1), name="pixels"),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, name="out"),
    ], name="tiny")
