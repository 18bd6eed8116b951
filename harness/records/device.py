"""What one job measured on a device, as frozen records: timings, transfer, execution plan, noise.

The runners parse what a device reports (the device runner's ``result.json``, benchmark_model's
log) into these once, on the host (:mod:`harness.runners.python`,
:mod:`harness.runners.benchmark_model`); ``DeviceRun`` carries them; the run directory stores their
``to_json()`` in a job's summary entry (``timings``, ``transfer``, ``repeat``; the execution plan
only as placement rows) and ``from_json`` reads that form back. A field is None where the runner
kind does not measure it; ``to_json`` leaves such fields out, so what is written is what was
measured.

>>> Timings(invoke_s=0.01, per_batch_s=(0.004, 0.004), host_run_s=0.5).to_json()
{'invoke_s': 0.01, 'per_batch_s': [0.004, 0.004], 'host_run_s': 0.5, 'latency_ms_per_sample': None}
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence


def _set_fields(record, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record's fields in order, tuples as lists, None fields left out unless ``always``."""
    out = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if value is not None or f.name in always:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (a newer runner may report more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _opt(convert, value):
    return None if value is None else convert(value)


def _seq(convert, values) -> tuple | None:
    return None if values is None else tuple(_opt(convert, v) for v in values)


@dataclass(frozen=True, kw_only=True)
class Timings:
    """A job's timings in seconds (latency in ms); None where the runner kind does not measure it.

    The Python runner (``device_runner.run``): ``load_s`` (runtime import and model load),
    ``prepare_s`` (resize and allocate), ``invoke_s`` (the whole inference loop), ``per_batch_s``
    (each invoke alone), ``total_s`` (the runner's wall time). benchmark_model: ``invocations``,
    ``init_s`` (per invocation: load, delegate, allocate), ``per_batch_s`` (each batch's single
    inference), ``invoke_s`` (their sum), ``timing_lines_missing`` (invocations that printed no
    timing line; None when none was missing). The host, for every kind: ``host_push_s``,
    ``host_run_s``, ``host_pull_s``. ``latency_ms_per_sample``: invoke time per sample of a
    finished job, None when unknown (``to_json`` always writes it, null then).
    """

    invocations: int | None = None
    load_s: float | None = None
    prepare_s: float | None = None
    init_s: tuple[float, ...] | None = None
    invoke_s: float | None = None
    per_batch_s: tuple[float, ...] | None = None
    total_s: float | None = None
    timing_lines_missing: int | None = None
    host_push_s: float | None = None
    host_run_s: float | None = None
    host_pull_s: float | None = None
    latency_ms_per_sample: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that were measured, in field order, and ``latency_ms_per_sample`` always."""
        return _set_fields(self, always=("latency_ms_per_sample",))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Timings":
        """Timings from a summary entry's ``timings`` or a result.json's (unknown keys ignored)."""
        known = _known(cls, data)
        ints = {"invocations", "timing_lines_missing"}
        lists = {"init_s", "per_batch_s"}
        return cls(**{k: _opt(int, v) if k in ints else _seq(float, v) if k in lists else _opt(float, v)
                      for k, v in known.items()})


@dataclass(frozen=True, kw_only=True)
class JobTransfer:
    """What the host moved for one job: bytes and seconds (``harness.on_device.Transfer`` counts
    them while the job runs). ``pushed`` is bytes by kind (runner, inputs, model, job; 0 when the
    device had the file already); ``bytes_pushed`` their sum."""

    bytes_pushed: int = 0
    bytes_pulled: int = 0
    push_s: float = 0.0
    run_s: float = 0.0
    pull_s: float = 0.0
    pushed: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"bytes_pushed": self.bytes_pushed, "bytes_pulled": self.bytes_pulled,
                "push_s": self.push_s, "run_s": self.run_s, "pull_s": self.pull_s,
                "pushed": dict(self.pushed)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobTransfer":
        known = _known(cls, data)
        return cls(**{k: ({str(kind): int(n) for kind, n in v.items()} if k == "pushed"
                          else int(v) if k.startswith("bytes_") else float(v)) for k, v in known.items()})


@dataclass(frozen=True, kw_only=True)
class NodePlacement:
    """Where one original node of the graph ran (protocol 1.2 ``placement``)."""

    node: int
    op: str
    on: str  # "delegate" or "cpu"


@dataclass(frozen=True, kw_only=True)
class CompilerOp:
    """One row of the Edge TPU compiler's operator table: ``count`` ops ``op`` with ``status``."""

    op: str = ""
    count: int = 1
    status: str = ""


@dataclass(frozen=True, kw_only=True)
class Precision:
    """The precision a job asked its delegate for and the one the runtime reported ("fp16", "fp32",
    "model" for the model's own types, "unknown" where nothing tells)."""

    requested: str
    reported: str


@dataclass(frozen=True, kw_only=True)
class CpuPathCheck:
    """A GPU job's first outputs against one CPU path on the same samples (device_runner/compiled.py):
    bit-identical or not, the largest difference, or why the CPU path could not run."""

    path: str
    identical: bool | None = None
    max_abs_diff: float | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class CpuComparison:
    """The independent check of a GPU job: ``samples`` compared on each CPU path (runner 1.4)."""

    samples: int = 0
    paths: tuple[CpuPathCheck, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The runner's own shape: ``{"samples": n, "<path>": {"identical", "max_abs_diff"} | {"error"}}``."""
        out: dict[str, Any] = {"samples": self.samples}
        for c in self.paths:
            out[c.path] = {k: v for k, v in (("identical", c.identical), ("max_abs_diff", c.max_abs_diff),
                                             ("error", c.error)) if v is not None}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CpuComparison":
        paths = tuple(CpuPathCheck(path=str(name), **_known(CpuPathCheck, c)) for name, c in sorted(data.items())
                      if name != "samples" and isinstance(c, Mapping))
        return cls(samples=int(data.get("samples") or 0), paths=paths)


@dataclass(frozen=True, kw_only=True)
class AcceleratorReport:
    """What LiteRT's CompiledModel told about a GPU/compiled job (device_runner/compiled.py): the
    accelerator library that registered, the adapter, its backend and type ("unknown" where no
    log line says), whether the whole model was accelerated, and why the GPU is unproven."""

    accelerator_registered: str = "unknown"
    adapter: str = "unknown"
    backend: str = "unknown"
    adapter_type: str = "unknown"
    fully_accelerated: bool | None = None
    precision_requested: str | None = None
    precision_reported: str | None = None
    unproven: bool | None = None
    evidence: tuple[str, ...] = ()
    integer_io: bool | None = None
    cpu_comparison: CpuComparison | None = None


@dataclass(frozen=True, kw_only=True)
class ExecutionPlan:
    """What a job's interpreter really delegated, as far as its source can tell (``harness.placement``).

    ``source`` "interpreter" (the Python runner: ``nodes``, ``delegated_nodes``,
    ``delegate_partitions``, ``ops``, ``cpu_ops`` and, since protocol 1.2, ``placement``; a 1.1
    runner names no source), "benchmark_model log" (``delegate_partitions``, ``fully_delegated``,
    ``log_lines``); ``compiler_ops`` is the Edge TPU compiler's table, joined by the farm.
    ``available`` is False when the runtime could not tell.
    """

    available: bool = False
    source: str | None = None
    nodes: int | None = None
    delegated_nodes: int | None = None
    delegate_partitions: int | None = None
    ops: tuple[str, ...] | None = None
    cpu_ops: tuple[str, ...] | None = None
    placement: tuple[NodePlacement, ...] | None = None
    fully_delegated: bool | None = None
    log_lines: tuple[str, ...] | None = None
    compiler_ops: tuple[CompilerOp, ...] | None = None
    delegate: str | None = None                      # CompiledModel jobs: the delegate confirmed
    unproven: bool | None = None                     # a GPU job whose computation is not proven
    precision: Precision | None = None
    runtime_report: AcceleratorReport | None = None
    on: str | None = None          # CompiledModel jobs: delegate | partial | cpu, as the runtime says

    def to_json(self) -> dict[str, Any]:
        """The fields that are known (``available`` always), nested records as objects."""
        out = _set_fields(self, always=("available",))
        for key in ("placement", "compiler_ops"):
            if key in out:
                out[key] = [_set_fields(p) for p in out[key]]
        for key in ("precision", "runtime_report"):
            if key in out:
                record = out[key]
                out[key] = _set_fields(record, always=tuple(f.name for f in fields(record)))
                if isinstance(record, AcceleratorReport):
                    if record.cpu_comparison is None:
                        del out[key]["cpu_comparison"]
                    else:
                        out[key]["cpu_comparison"] = record.cpu_comparison.to_json()
                    if record.integer_io is None:
                        del out[key]["integer_io"]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExecutionPlan":
        """A plan from a result.json's ``execution_plan`` (or ``to_json``); unknown keys ignored."""
        known = _known(cls, data)
        nested = {"placement": lambda p: NodePlacement(node=int(p["node"]), op=str(p["op"]), on=str(p["on"])),
                  "compiler_ops": lambda o: CompilerOp(**_known(CompilerOp, o))}
        records = {"precision": Precision, "runtime_report": AcceleratorReport}
        for key, value in known.items():
            if key in nested:
                known[key] = _seq(nested[key], value)
            elif key in ("ops", "cpu_ops", "log_lines"):
                known[key] = _seq(str, value)
            elif key in ("nodes", "delegated_nodes", "delegate_partitions"):
                known[key] = _opt(int, value)
            elif key in ("available", "fully_delegated", "unproven"):
                known[key] = _opt(bool, value)
            elif key in records and value is not None:
                fields_of = _known(records[key], value)
                if "evidence" in fields_of:
                    fields_of["evidence"] = tuple(str(e) for e in fields_of["evidence"])
                if isinstance(fields_of.get("cpu_comparison"), Mapping):
                    fields_of["cpu_comparison"] = CpuComparison.from_json(fields_of["cpu_comparison"])
                known[key] = records[key](**fields_of)
        return cls(**known)

    def with_compiler(self, ops: Sequence[Mapping[str, Any]]) -> "ExecutionPlan":
        """This plan with the Edge TPU compiler's operator table (rows of ``CompileReport.to_json``)."""
        return replace(self, compiler_ops=tuple(CompilerOp(**_known(CompilerOp, o)) for o in ops))


@dataclass(frozen=True, kw_only=True)
class RepeatNoise:
    """The run-to-run noise of a job run several times (``harness.metrics.noise.repeat_noise``).

    ``runs`` that finished (the first included), ``failed`` error messages of repeats that failed,
    ``identical`` (every repeat gave bit-identical logits), ``max_abs_logit_diff`` and
    ``flip_rate_max`` against the first run, each run's ``latency_ms_per_sample`` (None where
    unknown) and their median, min, max and ``latency_rel_spread`` ((max - min) / median).
    """

    runs: int
    failed: tuple[str, ...]
    identical: bool
    max_abs_logit_diff: float
    flip_rate_max: float
    latency_ms_per_sample: tuple[float | None, ...]
    latency_ms_median: float | None
    latency_ms_min: float | None
    latency_ms_max: float | None
    latency_rel_spread: float | None

    def to_json(self) -> dict[str, Any]:
        """Every field (null where unknown), in field order."""
        return _set_fields(self, always=tuple(f.name for f in fields(self)))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RepeatNoise":
        known = _known(cls, data)
        return cls(**{**known, "failed": tuple(known["failed"]),
                      "latency_ms_per_sample": tuple(known["latency_ms_per_sample"])})
