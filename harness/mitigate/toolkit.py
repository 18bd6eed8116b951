"""The optional packages behind ``qskew mitigate``'s quantization-aware training (the ``mitigate`` extra).

QAT needs tf-keras (Keras 2) and tensorflow-model-optimization; nothing else in qskew does, so a plain
``pip install qskew`` leaves them out and ``pip install 'qskew[mitigate]'`` brings them. The host calls
``require`` before it spends time on a QAT job (it only looks the modules up: TensorFlow must not
load Keras 2 in the host process, see ``harness.mitigate.qat``); the QAT child process imports them
through ``load``. Both raise the same QskewError naming the extra. Nothing else may import them.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from harness.errors import QskewError

INSTALL_HINT = "pip install 'qskew[mitigate]'"
# module name -> the distribution that provides it (what the message tells the user is missing)
PACKAGES = {"tf_keras": "tf-keras", "tensorflow_model_optimization": "tensorflow-model-optimization"}


def missing() -> list[str]:
    """The distributions of ``PACKAGES`` whose module cannot be found, in ``PACKAGES`` order."""
    absent = []
    for module, distribution in PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken install, or a module without a spec
            found = False
        if not found:
            absent.append(distribution)
    return absent


def require() -> None:
    """Raise QskewError (naming the extra) unless every package of ``PACKAGES`` can be imported."""
    absent = missing()
    if absent:
        raise _missing_error(absent)


def load() -> tuple[ModuleType, ModuleType]:
    """``(tf_keras, tensorflow_model_optimization)``, imported; QskewError naming the extra if missing."""
    try:
        tf_keras = importlib.import_module("tf_keras")
        tfmot = importlib.import_module("tensorflow_model_optimization")
    except ImportError as exc:
        raise _missing_error(missing() or [PACKAGES.get(exc.name or "", exc.name or str(exc))]) from exc
    return tf_keras, tfmot


def _missing_error(distributions: list[str]) -> QskewError:
    return QskewError(f"quantization-aware training (qskew mitigate) needs {' and '.join(distributions)}, "
                      f"not installed here; install with: {INSTALL_HINT} (or run qskew mitigate --no-qat)")
