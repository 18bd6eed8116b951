"""The qskew device runner: the files the host pushes to a device and runs there (see ``run.py``).

Nothing here imports ``harness``; everything runs under Python 3.7+ with numpy and a TFLite runtime.
"""

# Every file a board needs besides numpy and a runtime; the host (harness.on_device) pushes exactly
# these, and ``run.py`` imports no other sibling. benchmark_model_standin.py is pushed on its own.
RUNNER_FILES = ("__init__.py", "protocol.py", "jobdir.py", "runtime.py", "inference.py", "compiled.py",
                "tensors.py", "run.py")
