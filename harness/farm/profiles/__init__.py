"""Device profiles: which variants an accelerator accepts, and how an artifact is made ready for it.

A device's inventory entry may name a ``profile`` (inventory.PROFILES). Without one, every variant
runs as it is. ``profile = "edgetpu"`` (a Coral Dev Board, or a host with a USB/M.2/PCIe Edge TPU):

- **refusal**, decided from the .tflite file itself (harness.farm.profiles.edgetpu.refusal): only full-integer
  models (int8/uint8 activations and I/O, int32 biases) with every size fixed and batch 1. int16x8
  and mixed (16-bit activations), fp32/dynamic/float16 (float computation) and an int8 with a
  dynamic batch (convert with ``[quantize] fixed_batch = 1``) are refused before anything is
  pushed; the runner reports the refusal as the job's error. The rule holds for every delegate:
  the board's CPU delegates (xnnpack, reference, builtin) run the same fixed int8 model the TPU
  runs, which is what makes them a fair comparison with ``edgetpu``. To run float variants on
  such a board's CPU, list it a second time in the inventory without a profile.
- **prepare**, for the ``edgetpu`` / ``edgetpu:<device>`` delegate only: the variant's Edge TPU
  model (harness.farm.profiles.edgetpu_compiler.prepare: a precompiled ``*_edgetpu.tflite``, else ``edgetpu_compiler``
  from the PATH, cached), recorded in the artifact's recipe under ``"edgetpu"``. Other delegates
  get the uncompiled model: the CPU cannot run the TPU's custom op.

>>> refusal(DeviceSpec(name="coral", reach="local", profile="edgetpu"), int16x8, "edgetpu")  # doctest: +SKIP
"variant 'int16x8': 16-bit activations (int16 outputs of QUANTIZE x1, CONV_2D x2, ...); the Edge TPU runs 8-bit integer models only"
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.errors import ArtifactError
from harness.records import ModelArtifact

EDGETPU = "edgetpu"


def refusal(spec, artifact: ModelArtifact, delegate: str) -> str | None:
    """Why the device ``spec`` cannot run ``artifact`` with ``delegate``, or None if it can.

    An artifact that failed to convert is not refused here: its own error is the job's. A board
    device (``reach = "board"``) also refuses what its runtime is known to crash on
    (:mod:`harness.targets.board.faults`).
    """
    if not artifact.ok or artifact.path is None:
        return None
    if spec.reach == "board":
        from harness.targets.board.faults import device_refusal

        why = device_refusal(str(spec.board or ""), Path(artifact.path), delegate)
        if why:
            return f"variant {artifact.variant!r}: {why}"
    if spec.profile != EDGETPU:
        return None
    from harness.farm.profiles import edgetpu

    try:
        why = edgetpu.refusal(Path(artifact.path))
    except ArtifactError as exc:
        return f"variant {artifact.variant!r}: {exc}"
    return f"variant {artifact.variant!r}: {why}" if why else None


def prepare(spec, artifact: ModelArtifact, echo: Callable[[str], None] = lambda s: None, *,
            delegate: str | None = None) -> ModelArtifact:
    """The artifact this device runs for ``artifact`` with ``delegate``.

    Unchanged for devices without a profile, for delegates other than ``edgetpu[:<device>]``
    and when ``delegate`` is None. For the Edge TPU, an artifact whose ``error`` is set (nothing
    can be pushed) when no compiled model can be had.
    """
    if spec.profile != EDGETPU or delegate is None or delegate.split(":", 1)[0] != EDGETPU:
        return artifact
    from harness.farm.profiles import edgetpu_compiler

    return edgetpu_compiler.prepare(artifact, device=spec.name, echo=echo)
