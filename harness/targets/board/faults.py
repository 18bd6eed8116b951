"""Known faults of a board's runtime: jobs refused before they start, each with its cause.

tflite-runtime 2.14 on armv7l (the only runtime with armv7 wheels; ``spec.ARCHES``) kills the
interpreter with SIGSEGV on the first ``invoke`` of a model whose int8 FULLY_CONNECTED has
per-channel weight scales (the converter's default for Dense layers), with the ``builtin`` kernels
and with ``xnnpack`` (which hands that op back to the builtin kernels). Found on an armv7l board
under qemu-arm 7.2 with every QEMU_CPU tried (cortex-a7, cortex-a15, max) and every cpuinfo
variant tried (Cortex-A7/A15/A72 parts, topology files); gdb-multiarch shows the fault in
``gemmlowp::UnpackResult`` with ``OutputStageScaleInt32ByFixedPointAndExponentPC``, reading the
per-channel exponent array through a null pointer. The 32-bit wheel multiplies int8 matrices with
gemmlowp where the 64-bit ones use ruy, so this is the runtime's code, not the emulation: expect
it on 32-bit hardware too (not checked on hardware here). The same model with per-tensor dense
weights runs, and the ``reference`` kernels run either.

So :func:`refusal` turns what would be a crash (a timeout, or "uncaught target signal 11") into
one error naming the cause, the layers and what to do instead.

>>> refusal(BoardSpec("armv7l"), Path("int8.tflite"), "builtin")   # doctest: +SKIP
"tflite-runtime==2.14.0 on armv7l crashes (SIGSEGV in gemmlowp's per-channel output stage) ..."
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ArtifactError
from harness.targets.board.spec import BoardSpec

CRASHING_DELEGATES = ("builtin", "xnnpack")  # both run FULLY_CONNECTED on the builtin int8 kernels
GEMMLOWP_ARCHES = ("armv7l",)                # where the runtime's int8 GEMM is gemmlowp, not ruy
FAULTY_RUNTIME = "tflite-runtime"            # the distribution whose armv7 build crashes (2.14.0 measured)
MAX_NAMED_LAYERS = 3                         # layers the message names before "and N more"


def refusal(spec: BoardSpec, model: Path, delegate: str) -> str | None:
    """Why a board made from ``spec`` cannot run ``model`` with ``delegate``, or None if it can."""
    if (spec.arch not in GEMMLOWP_ARCHES or delegate not in CRASHING_DELEGATES
            or not spec.runtime.replace("_", "-").startswith(FAULTY_RUNTIME)):
        return None
    layers = per_channel_int8_dense(model)
    if not layers:
        return None
    named = ", ".join(layers[:MAX_NAMED_LAYERS]) + (
        f" and {len(layers) - MAX_NAMED_LAYERS} more" if len(layers) > MAX_NAMED_LAYERS else "")
    return (f"{spec.runtime} on {spec.arch} crashes (SIGSEGV in gemmlowp's per-channel output stage, "
            f"which its 32-bit build uses) on int8 FULLY_CONNECTED with per-channel weight scales "
            f"({named}), with the {delegate} kernels; run this variant with the 'reference' delegate "
            f"there, or on an aarch64 board")


def per_channel_int8_dense(model: Path) -> list[str]:
    """Output names of the FULLY_CONNECTED ops of ``model`` whose int8 weights have several scales
    (ArtifactError if the file is not a TFLite flatbuffer)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    try:
        flat = fb.read_model(str(model))
    except Exception as exc:  # flatbuffers raises struct.error, IndexError, TypeError... on junk
        raise ArtifactError(f"{model} is not a readable TFLite flatbuffer: {exc}") from exc
    found = []
    for graph in flat.subgraphs:
        for op in graph.operators:
            if fb.opcode_to_name(flat, op.opcodeIndex) != "FULLY_CONNECTED" or op.inputs is None or len(op.inputs) < 2:
                continue
            weights = graph.tensors[int(op.inputs[1])]
            scales = weights.quantization.scale if weights.quantization is not None else None
            if fb.type_to_name(weights.type).lower() == "int8" and scales is not None and len(scales) > 1:
                out = graph.tensors[int(op.outputs[0])].name
                found.append(out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out))
    return found


def device_refusal(board: str, model: Path, delegate: str) -> str | None:
    """:func:`refusal` for a ``reach = "board"`` device whose ``board`` is an architecture (its
    default board) or a built board's folder (its manifest's spec); None when neither names one."""
    from harness.targets.board.build import load_board
    from harness.targets.board.spec import ARCHES

    if board in ARCHES:
        return refusal(BoardSpec(board), model, delegate)
    built = load_board(Path(board)) if board else None
    return refusal(built.spec, model, delegate) if built is not None else None
