"""The Edge TPU's compiled model: a precompiled ``*_edgetpu.tflite``, else ``edgetpu_compiler``.

:func:`prepare` turns a variant into its ``*_edgetpu.tflite``: a precompiled file the user
supplies, else ``edgetpu_compiler`` when it is on the PATH (cached by the input's sha256 and the
compiler's version), and records where it came from, the compiler's version and, from the
compiler's operation log, which operators were mapped to the Edge TPU.

The compiler's command line (coral.ai/docs/edgetpu/compiler)::

    edgetpu_compiler [-o|--out_dir DIR] [-s|--show_operations] model.tflite
        -> DIR/<stem>_edgetpu.tflite and DIR/<stem>_edgetpu.log
    edgetpu_compiler --version
        -> "Edge TPU Compiler version 16.0.384591198"

and its operation log (``<stem>_edgetpu.log``; ``-s`` prints the same table)::

    Edge TPU Compiler version 16.0.384591198
    Input: int8.tflite
    Output: int8_edgetpu.tflite

    Operator                       Count      Status

    CONV_2D                        2          Mapped to Edge TPU
    QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation

Precompiled models are looked for, in this order, at ``<variant .tflite minus .tflite>_edgetpu.tflite``
(what ``edgetpu_compiler -o <the variant's folder> <variant>.tflite`` writes) and at
``$QSKEW_EDGETPU_MODELS/<first 16 hex digits of the variant's sha256>_edgetpu.tflite``; a
``.log`` beside either is read for the operator table.

>>> prepare(int8_fixed1, device="coral-usb").recipe["edgetpu"]["mapped_ops"]   # doctest: +SKIP
5
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import paths
from harness.errors import ArtifactError, QskewError
from harness.farm.profiles.edgetpu import CUSTOM_OP, read_graph
from harness.fsutil import atomic_write_text
from harness.records import ModelArtifact
from harness.text import tail

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
PRECOMPILED_ENV = "QSKEW_EDGETPU_MODELS"   # a folder of <sha256[:16]>_edgetpu.tflite files
CACHE_SUBDIR = "edgetpu"                   # compiled models under harness.paths.cache_dir()
COMPILED_SUFFIX = "_edgetpu"               # the compiler's name for its output: <stem>_edgetpu.tflite
SHA_PREFIX_CHARS = 16                      # 64 bits of sha256 name a precompiled file unambiguously
MAPPED_STATUS = "Mapped to Edge TPU"
COMPILE_TIMEOUT_S = 300.0   # the compiler stops itself after 180 s by default; room to start and write
VERSION_TIMEOUT_S = 30.0    # `--version` answers at once; a hung binary must not hang a sweep
OUTPUT_TAIL_CHARS = 1500    # compiler output quoted in an error: its last lines say what failed
_VERSION = re.compile(r"Edge TPU Compiler version\s+(\S+)")
_LOG_ROW = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")


@dataclass(frozen=True)
class OpStatus:
    """One row of the compiler's operator table: ``count`` ops of kind ``op`` with ``status``."""

    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status == MAPPED_STATUS

    def to_json(self) -> dict:
        return {"op": self.op, "count": self.count, "status": self.status}


@dataclass(frozen=True)
class CompileReport:
    """Where an Edge TPU model came from and what its compiler mapped to the TPU.

    ``compiler_version`` is "" and ``ops`` None when a precompiled model came without its log.
    """

    source: str                       # "edgetpu_compiler" or "precompiled"
    compiler_version: str
    ops: tuple[OpStatus, ...] | None
    input_sha256: str                 # the full-integer model it was compiled from
    path: Path                        # the compiled model

    @property
    def mapped_ops(self) -> int | None:
        return None if self.ops is None else sum(o.count for o in self.ops if o.mapped)

    @property
    def total_ops(self) -> int | None:
        return None if self.ops is None else sum(o.count for o in self.ops)

    def to_json(self) -> dict:
        return {"source": self.source, "compiler_version": self.compiler_version,
                "mapped_ops": self.mapped_ops, "total_ops": self.total_ops,
                "ops": None if self.ops is None else [o.to_json() for o in self.ops],
                "input_sha256": self.input_sha256}


def parse_version(text: str) -> str:
    """The version in ``Edge TPU Compiler version 16.0.384591198`` ("" if absent)."""
    found = _VERSION.search(text)
    return found.group(1) if found else ""


def parse_log(text: str) -> tuple[OpStatus, ...]:
    """The operator table of a compiler log (or of ``-s`` output), in its order.

    Rows follow the ``Operator  Count  Status`` header; an op may appear on several rows with
    different statuses (some mapped, some not).
    """
    rows: list[OpStatus] = []
    in_table = False
    for line in text.splitlines():
        words = line.split()
        if words[:3] == ["Operator", "Count", "Status"]:
            in_table = True
            continue
        if not in_table or not words:
            continue
        row = _LOG_ROW.match(line.strip())
        if row is None:
            break  # the table ended (a later section of -s output)
        rows.append(OpStatus(op=row.group(1), count=int(row.group(2)), status=row.group(3)))
    return tuple(rows)


def find_compiler() -> str | None:
    """``edgetpu_compiler`` on the PATH, or None."""
    return shutil.which(COMPILER)


def compiler_version(compiler: str) -> str:
    """What ``<compiler> --version`` says its version is (ArtifactError if it says nothing)."""
    from harness.targets.process import run_command

    res = run_command([compiler, "--version"], timeout_s=VERSION_TIMEOUT_S)
    version = parse_version(res.stdout + "\n" + res.stderr)
    if res.returncode != 0 or not version:
        raise ArtifactError(f"{compiler} --version exited {res.returncode} without a version: "
                            f"{_tail(res.stdout + res.stderr)}")
    return version


def compile_model(model: Path, sha256: str, compiler: str) -> CompileReport:
    """``model`` compiled by ``compiler``, from qskew's cache when this version compiled it before."""
    version = compiler_version(compiler)
    entry = paths.cache_dir(CACHE_SUBDIR) / sha256 / re.sub(r"[^A-Za-z0-9._-]", "_", version)
    cached = _cached(entry, sha256)
    if cached is not None:
        log.info("Edge TPU model of %s: cached %s", model, cached.path)
        return cached
    entry.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=entry, prefix=".compile-"))
    try:
        out_path, log_text = _run_compiler(compiler, version, model, work)
        compiled = entry / f"model{COMPILED_SUFFIX}.tflite"
        os.replace(out_path, compiled)
        (entry / f"model{COMPILED_SUFFIX}.log").write_text(log_text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = CompileReport(source="edgetpu_compiler", compiler_version=version,
                           ops=parse_log(log_text), input_sha256=sha256, path=compiled)
    atomic_write_text(entry / "report.json",
                      json.dumps({**report.to_json(), "sha256": _sha256(compiled)}, indent=2, sort_keys=True))
    return report


def _run_compiler(compiler: str, version: str, model: Path, out_dir: Path) -> tuple[Path, str]:
    from harness.targets.process import run_command

    res = run_command([compiler, "-s", "-o", str(out_dir), str(model)], timeout_s=COMPILE_TIMEOUT_S)
    out_path = out_dir / f"{model.stem}{COMPILED_SUFFIX}.tflite"
    if res.returncode != 0 or not out_path.is_file():
        raise ArtifactError(f"{COMPILER} {version} could not compile {model} (exit "
                            f"{res.returncode}, no {out_path.name}): {_tail(res.stdout + res.stderr)}")
    log_file = out_dir / f"{model.stem}{COMPILED_SUFFIX}.log"
    return out_path, log_file.read_text(errors="replace") if log_file.is_file() else res.stdout


def _cached(entry: Path, sha256: str) -> CompileReport | None:
    """A complete cache entry (report.json is written last, with the compiled file's sha256)."""
    try:
        meta = json.loads((entry / "report.json").read_text())
    except (OSError, ValueError):
        return None
    compiled = entry / f"model{COMPILED_SUFFIX}.tflite"
    if not compiled.is_file() or _sha256(compiled) != meta.get("sha256"):
        return None
    ops = tuple(OpStatus(**o) for o in meta["ops"]) if meta.get("ops") is not None else None
    return CompileReport(source="edgetpu_compiler", compiler_version=meta["compiler_version"],
                         ops=ops, input_sha256=sha256, path=compiled)


def precompiled_candidates(model: Path, sha256: str) -> list[Path]:
    """Where a precompiled Edge TPU model of ``model`` may be, in the order they are tried."""
    found = [model.with_name(f"{model.stem}{COMPILED_SUFFIX}.tflite")]
    folder = os.environ.get(PRECOMPILED_ENV)
    if folder:
        found.append(Path(folder).expanduser() / f"{sha256[:SHA_PREFIX_CHARS]}{COMPILED_SUFFIX}.tflite")
    return found


def precompiled(model: Path, sha256: str) -> CompileReport | None:
    """The first precompiled model of ``model`` that exists, with its log's table if one is beside it."""
    for candidate in precompiled_candidates(model, sha256):
        if candidate.is_file():
            log_file = candidate.with_suffix(".log")
            text = log_file.read_text(errors="replace") if log_file.is_file() else ""
            return CompileReport(source="precompiled", compiler_version=parse_version(text),
                                 ops=parse_log(text) if text else None, input_sha256=sha256,
                                 path=candidate)
    return None


def edgetpu_model(model: Path, sha256: str) -> CompileReport:
    """The Edge TPU model of ``model``: precompiled if supplied, else compiled; ArtifactError
    saying what is missing if neither can be had."""
    report = precompiled(model, sha256)
    if report is not None:
        return report
    compiler = find_compiler()
    if compiler is not None:
        return compile_model(model, sha256, compiler)
    places = " or ".join(str(p) for p in precompiled_candidates(model, sha256))
    wanted = f"{sha256[:SHA_PREFIX_CHARS]}{COMPILED_SUFFIX}.tflite"
    env_hint = "" if os.environ.get(PRECOMPILED_ENV) else \
        f" (or set ${PRECOMPILED_ENV} to a folder holding {wanted})"
    raise ArtifactError(
        f"no Edge TPU model for {model}: {COMPILER} is not on the PATH (it runs on x86-64 "
        f"Debian-like Linux: apt package edgetpu-compiler from Coral's repository) and there is no "
        f"precompiled model at {places}{env_hint}; copy the model to such a host, run "
        f"`{COMPILER} {model.name}` and bring {model.stem}{COMPILED_SUFFIX}.tflite back to one of "
        "those places")


def prepare(artifact: ModelArtifact, device: str,
            echo: Callable[[str], None] = lambda s: None) -> ModelArtifact:
    """The Edge TPU model of ``artifact`` as an artifact of the same variant.

    Its recipe is the variant's plus ``"edgetpu": CompileReport.to_json()``. When no Edge TPU
    model can be had (no compiler, no precompiled file, the compiler failed) the artifact comes
    back with ``error`` set and the uncompiled path: the job fails with that message and nothing
    is pushed.
    """
    if not artifact.ok or artifact.path is None:
        return artifact
    try:
        report = edgetpu_model(Path(artifact.path), artifact.sha256 or _sha256(Path(artifact.path)))
        compiled = compiled_artifact(artifact, report)
    except QskewError as exc:
        error = f"device {device} (edgetpu): variant {artifact.variant!r}: {exc}"
        log.info("%s", error)  # the job's failure line says it to the user
        return dataclasses.replace(artifact, error=error)
    source = " ".join(filter(None, (report.source, report.compiler_version)))
    mapped = ("no operator log" if report.ops is None
              else f"{report.mapped_ops}/{report.total_ops} ops mapped to the Edge TPU")
    echo(f"  {artifact.variant} on {device}: Edge TPU model from {source} ({mapped})")
    return compiled


def compiled_artifact(source: ModelArtifact, report: CompileReport) -> ModelArtifact:
    """A ModelArtifact for ``report.path``. A model holding the ``edgetpu-custom-op`` cannot be
    opened by the host runtime, so its I/O is read from the flatbuffer and it is not
    prepare-checked here; any other (nothing mapped, or a stand-in) goes through artifact_of."""
    from harness.quantize.convert import artifact_of

    recipe = {**dict(source.recipe), "edgetpu": report.to_json()}
    graph = read_graph(report.path)
    if any(op.op == CUSTOM_OP for op in graph.ops):
        inputs, outputs = graph.io()
        return dataclasses.replace(source, path=report.path, sha256=_sha256(report.path),
                                   size_bytes=report.path.stat().st_size, inputs=inputs,
                                   outputs=outputs, recipe=recipe, error=None)
    built = artifact_of(report.path, source.variant, recipe, None, check_batch_size=1)
    return dataclasses.replace(built, calibration=source.calibration)


def _sha256(path: Path) -> str:
    from harness.quantize.cache import file_sha256

    return file_sha256(path)


def _tail(output: str) -> str:
    """The compiler's output on one line (an error message is one line), its end kept."""
    return tail(" ".join(output.split()), OUTPUT_TAIL_CHARS)
