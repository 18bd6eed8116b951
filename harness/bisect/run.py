"""``qskew bisect``: where job A's tensors first part from job B's, per sample and group.

Reads the run, chooses the samples (:mod:`harness.bisect.select`), runs both jobs again on their own
devices as tensor jobs (:mod:`harness.bisect.dump`; a delegated job runs a copy of its model with
every op output promoted to a model output, :func:`harness.bisect.graph.promote_outputs`), compares
the tensors (:mod:`harness.bisect.compare`) and writes ``OUT/bisect.csv``.

>>> result = bisect(Path("runs/board"), BisectOptions("int8/board-aarch64/builtin", "int8/local/reference"))  # doctest: +SKIP
>>> print("\\n".join(summary_lines(result.summary, result.choice.rule)))                                     # doctest: +SKIP
faint: 3 of 25 samples with differing logits first differ at dense_1/MatMul (FULLY_CONNECTED, int8, per-channel), max 1 steps
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from device_runner import protocol
from harness.bisect import compare
from harness.bisect.dump import TensorDump, dump_tensors
from harness.bisect.graph import graph_facts, promote_outputs
from harness.bisect.select import PER_GROUP, SampleChoice, choose_samples, parse_job
from harness.metrics.bisect import summarize
from harness.errors import ArtifactError, ConfigError, ResultsError
from harness.fsutil import atomic_write_bytes
from harness.paths import cache_dir
from harness.records.bisect import BISECT_DIR, BISECT_FILE, FILE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from harness.records import GroupedDataset
    from harness.rundir import RunData

# Delegates that compute a partition in their own memory (and LiteRT's CompiledModel, which shows
# only its signature's outputs): their jobs run the promoted copy.
PROMOTED_KINDS = ("xnnpack", "external", "edgetpu")
# Ops whose output shares its input's memory: CompiledModel cannot hand such a tensor back as an
# output ("Failed to set custom allocation"); it holds its input's values, so nothing is lost.
ALIASING_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


@dataclass(frozen=True)
class BisectOptions:
    job_a: str
    job_b: str
    samples: str = "flipped"
    per_group: int = PER_GROUP
    out: Path | None = None                 # default RUN_DIR/bisect
    model_a: Path | None = None             # run job A with this .tflite instead of its variant's
    step_tolerance: float = compare.STEP_TOLERANCE
    float_tolerance: float = compare.FLOAT_TOLERANCE


@dataclass(frozen=True, eq=False)
class BisectResult:
    table: "pd.DataFrame"
    summary: "pd.DataFrame"
    choice: SampleChoice
    dumps: tuple[TensorDump, TensorDump]
    file: Path


def bisect(run_dir: Path, options: BisectOptions, echo: Callable[[str], None] = lambda s: None) -> BisectResult:
    """Bisect job A against job B of ``run_dir`` (module docstring); writes OUT/bisect.csv."""
    from harness.rundir import read_run

    run = read_run(Path(run_dir))
    job_a, job_b = parse_job(options.job_a), parse_job(options.job_b)
    choice = pick_samples(run, job_a, job_b, options)
    echo(f"samples: {len(choice.ids)} ({choice.rule}; per group {_counts(choice)})")
    if not len(choice.ids):
        raise ConfigError(f"--samples {options.samples}: no sample chosen")
    test = _test_subset(run, choice)
    model_b = job_model(run, job_b)
    model_a = _model_file(Path(options.model_a)) if options.model_a else job_model(run, job_a)
    dump_b = run_job(run, job_b, model_b, test, echo)
    dump_a = run_job(run, job_a, model_a, test, echo)
    graph = graph_facts(model_b.read_bytes(), str(model_b))
    table = compare.compare_dumps(dump_a, dump_b, graph, choice.ids, choice.groups, options.step_tolerance,
                                  options.float_tolerance)
    out = Path(options.out) if options.out else Path(run_dir) / BISECT_DIR
    file = write_table(out, table, options.job_a, options.job_b)
    return BisectResult(table=table, summary=summarize(table), choice=choice, dumps=(dump_a, dump_b), file=file)


def _model_file(path: Path) -> Path:
    """--model-a: an existing .tflite (read by the schema before anything is pushed)."""
    if not path.is_file():
        raise ArtifactError(f"--model-a {path}: no such file")
    graph_facts(path.read_bytes(), f"--model-a {path}")
    return path


def pick_samples(run: "RunData", job_a: tuple, job_b: tuple, options: BisectOptions) -> SampleChoice:
    """The ``--samples`` rule applied to the run's stored predictions of both jobs."""
    known = set(run.jobs())
    for job in (job_a, job_b):
        if job not in known:
            raise ConfigError(f"job {'/'.join(job)} is not a finished job of {run.path}; it has: "
                              f"{', '.join('/'.join(j) for j in sorted(known))}")
    test = run.test_set()
    ids = test["id"].to_numpy().astype(str)
    la, lb = _aligned(run, job_a, ids), _aligned(run, job_b, ids)
    differ = np.any(la != lb, axis=1)
    return choose_samples(options.samples, test["group"].to_numpy(), ids, la.argmax(axis=1), lb.argmax(axis=1),
                          differ, options.per_group)


def _aligned(run: "RunData", job: tuple, ids: np.ndarray) -> np.ndarray:
    logits = run.logits(*job)
    position = {s: i for i, s in enumerate(logits.ids.tolist())}
    missing = [s for s in ids.tolist() if s not in position]
    if missing:
        raise ResultsError(f"{run.path}: job {'/'.join(job)} has no logits for {len(missing)} test samples")
    return logits.values[[position[s] for s in ids.tolist()]]


def _test_subset(run: "RunData", choice: SampleChoice) -> "GroupedDataset":
    from harness.analysis.analyze import load_checked_dataset

    test = load_checked_dataset(run).subset("test")
    position = {s: i for i, s in enumerate(np.asarray(test.ids).astype(str).tolist())}
    missing = [s for s in choice.ids.tolist() if s not in position]
    if missing:
        raise ResultsError(f"{run.path}: samples {missing[:3]} are not in the dataset's test split")
    return test.take(np.array([position[s] for s in choice.ids.tolist()], dtype=np.int64))


def variant_model(run: "RunData", variant: str) -> Path:
    """The variant's .tflite as the manifest records it, checked against its sha256."""
    from harness.on_device import sha256_file

    entry = next((v for v in run.manifest.get("variants") or [] if v.get("variant") == variant), None)
    if entry is None or not entry.get("path"):
        raise ConfigError(f"variant {variant!r} has no model file in {run.path / 'manifest.json'}")
    path = Path(entry["path"])
    if not path.is_file():
        raise ArtifactError(f"variant {variant!r}: {path} is missing (the cache was cleared?); rerun the experiment")
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise ArtifactError(f"variant {variant!r}: {path} has changed since the run (sha256 differs)")
    return path


def job_model(run: "RunData", job: tuple) -> Path:
    """The .tflite the job ran: its variant's file, or the fixed-batch copy a CompiledModel job ran
    (found in the variants cache by the sha256 the job recorded)."""
    from harness.on_device import sha256_file

    path = variant_model(run, job[0])
    entry = next(r for r in run.summary["runs"] if tuple(r[k] for k in ("variant", "target", "delegate")) == job)
    sha = entry.get("artifact_sha256")
    if not sha or sha256_file(path) == sha:
        return path
    for candidate in sorted(cache_dir("variants").glob(f"*/{job[0]}.tflite")):
        if sha256_file(candidate) == sha:
            return candidate
    raise ArtifactError(f"job {'/'.join(job)} ran a model with sha256 {sha[:16]}... that is no longer in "
                        f"{cache_dir('variants')}; rerun the experiment")


def run_job(run: "RunData", job: tuple, model: Path, test: "GroupedDataset", echo: Callable[[str], None]) -> TensorDump:
    """One job again as a tensor job on its own device (refused for runners that cannot dump)."""
    from harness.farm.connect import open_target
    from harness.farm.inventory import load_inventory

    variant, target_name, delegate = job
    settings = (run.manifest.get("config") or {}).get("run") or {}
    spec = load_inventory(settings.get("devices_file") or None).get(target_name)
    name = "/".join(job)
    if spec.runner != "python":
        raise ConfigError(f"job {name}: device {target_name} runs the {spec.runner} runner; TFLite's "
                          "benchmark_model binary cannot write intermediate tensors, so bisect cannot run "
                          "this job (pick a job on a device with runner = \"python\")")
    kind = protocol.parse_delegate(delegate)[0]
    if kind in PROMOTED_KINDS or delegate in protocol.COMPILED_DELEGATES:
        model = _promoted(model, delegate in protocol.COMPILED_DELEGATES)
    echo(f"{name}: running {len(test)} samples as a tensor job on {target_name}")
    target = open_target(spec)
    try:
        return dump_tensors(target, model, _sha256(model), test, delegate,
                            num_threads=int(settings.get("num_threads") or 2), runtime=settings.get("runtime") or "auto",
                            allow_partial=bool(settings.get("allow_partial")))
    finally:
        target.close()


def _promoted(model: Path, compiled: bool) -> Path:
    """The promoted copy (cached by content); for CompiledModel without the outputs of ALIASING_OPS."""
    data = promote_outputs(model.read_bytes(), str(model), ALIASING_OPS if compiled else ())
    path = cache_dir(BISECT_DIR) / f"{hashlib.sha256(data).hexdigest()}.tflite"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def _sha256(path: Path) -> str:
    from harness.on_device import sha256_file

    return sha256_file(path)


def write_table(out: Path, table: "pd.DataFrame", job_a: str, job_b: str) -> Path:
    """OUT/bisect.csv (replaced whole: a bisect is one snapshot, not a part of the run)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / BISECT_FILE
    data = table.assign(job_a=job_a, job_b=job_b)[list(FILE_COLUMNS)].to_csv(index=False).encode()
    atomic_write_bytes(path, data)
    return path


def _counts(choice: SampleChoice) -> str:
    names, counts = np.unique(choice.groups, return_counts=True)
    return ", ".join(f"{n} {c}" for n, c in zip(names.tolist(), counts.tolist())) or "none"
