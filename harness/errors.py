"""The error tree of qskew. Every error the library raises on purpose is a ``QskewError``.

::

    QskewError                      root; the CLI prints ``str(err)`` on one line and exits 2
    ├── ConfigError                 an experiment/policy file or a CLI option is wrong
    ├── DatasetError                a dataset cannot be loaded or does not fit the model
    ├── ModelError                  a Keras model/SavedModel cannot be loaded, built or trained
    ├── ConversionError             the TFLite converter or ai-edge-quantizer failed for one variant
    ├── ArtifactError               a .tflite file is unreadable/corrupt or has unusable I/O
    ├── TargetError                 anything that went wrong on (or reaching) a device
    │   ├── CommandFailed           a command ran and exited non-zero (cmd, returncode, output, device)
    │   ├── CommandTimeout          a command did not finish in time (cmd, timeout_s, device)
    │   ├── ProtocolMismatch        the runner on the device speaks another major protocol version
    │   ├── RunnerError             the runner started but reported an error (e.g. prepare failed)
    │   └── DeviceLost              the host holding the device is gone (a Ray node lost): drained at once
    ├── JobFailed                   a job failed before it ran on the device (its ``stage``: profile, prepare)
    └── ResultsError                a run directory is missing files or has an unknown schema

Foreign exceptions (TensorFlow, the TFLite runtime, subprocess, OS errors) are translated once,
where the dependency is called, with ``raise ... from exc`` so ``--debug`` still shows the cause.
"""

from __future__ import annotations

import enum

from harness import text


class QskewError(Exception):
    """Root of every error qskew raises on purpose."""


class ConfigError(QskewError):
    """An experiment, policy or command-line option is invalid."""


class DatasetError(QskewError):
    """A dataset cannot be loaded, is malformed, or does not fit the model."""


class ModelError(QskewError):
    """A model cannot be loaded, built or trained."""


class ConversionError(QskewError):
    """A variant failed to convert; carries the variant name and the converter's message (its
    first useful lines), and in ``detail`` the converter's whole text when that was longer."""

    def __init__(self, variant: str, message: str, detail: str | None = None):
        super().__init__(f"variant {variant!r} failed to convert: {message}")
        self.variant = variant
        self.message = message
        self.detail = detail


class ArtifactError(QskewError):
    """A .tflite file is unreadable, truncated or has I/O qskew cannot drive."""


class TargetError(QskewError):
    """Something went wrong on, or while reaching, a device (local or remote)."""

    def __init__(self, message: str, device: str = "local"):
        super().__init__(f"[{device}] {message}")
        self.device = device


class CommandFailed(TargetError):
    """A command exited non-zero."""

    def __init__(self, cmd, returncode: int, output: str, device: str = "local"):
        shown = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
        tail = text.tail(output)
        super().__init__(f"command {shown!r} exited with {returncode}" + (f": {tail}" if tail else ""), device)
        self.cmd = cmd
        self.returncode = returncode
        self.output = output


class CommandTimeout(TargetError):
    """A command did not finish within its timeout."""

    def __init__(self, cmd, timeout_s: float, output: str = "", device: str = "local"):
        shown = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
        super().__init__(f"command {shown!r} timed out after {timeout_s:.1f} s", device)
        self.cmd = cmd
        self.timeout_s = timeout_s
        self.output = output


class ProtocolMismatch(TargetError):
    """The device runner's protocol major version differs from the host's."""


class RunnerError(TargetError):
    """The runner started but reported a failure (model failed to prepare, delegate failed...)."""


class DeviceLost(TargetError):
    """The process or host that held the device is gone (e.g. its Ray node was lost): nothing more
    runs there, so the farm drains the device at once and retries its job on another pool member."""


class FailureStage(enum.Enum):
    """Where a job failed (``summary.json`` ``stage``): its variant did not convert, the device's
    profile refused it, the model the device needs could not be made, its delegate could not be
    applied or was not confirmed by the runtime (no silent CPU fallback), it failed running, or
    its outputs could not be scored."""

    CONVERT = "convert"
    PROFILE = "profile"
    PREPARE = "prepare"
    DELEGATE = "delegate"  # the delegate could not be applied, or the runtime did not confirm it ran
    RUN = "run"
    OUTPUTS = "outputs"    # it ran, but its outputs cannot be scored (NaN or infinite logits)


def failure_stage(run) -> FailureStage:
    """The stage of a job that failed on the device, from the prefix the runners give its error
    (the runner's error kind): ``delegate:``, ``outputs:``, else ``run``."""
    error = str(run.error or "")
    for stage in (FailureStage.DELEGATE, FailureStage.OUTPUTS):
        if error.startswith(f"{stage.value}:"):
            return stage
    return FailureStage.RUN


class JobFailed(QskewError):
    """A job failed at ``stage``; the message is the job's error as the run directory records it."""

    def __init__(self, message: str, stage: FailureStage):
        super().__init__(message)
        self.stage = stage


class ResultsError(QskewError):
    """A run directory is missing a file or has an unsupported schema version."""
