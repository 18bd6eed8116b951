"""The run directory's layout: every file and folder name, every column, the schema version.

This is the one module that knows these names; the writer, reader and resume logic
(:mod:`harness.rundir.writer`, :mod:`~harness.rundir.reader`, :mod:`~harness.rundir.resume`) and the
commands that read a run go through it.

Run directory layout (schema version 4)
=======================================

Schema 4 added the step columns ``max_step_diff`` and ``frac_logits_diff`` to the metrics table.
Like the drop attribution they compare two jobs, so they are computed when reading, from the
predictions parts and the manifest's output scales: runs of schema 1 to 3 read with them too, and
resuming one needs no rewrite of its parts (the manifest is rewritten as schema 4, as on every
resume). Schema 3 added the ``attribute`` column of the metrics parts (several group attributes
and their intersection, ``harness.metrics.attributes``); a schema-2 run reads as one attribute,
"group".

A run directory grows by one set of immutable *parts* per job; nothing an earlier job wrote is
rewritten (only ``manifest.json``, which is small, is rewritten on resume). Every file is written
atomically (``harness.fsutil.atomic_write``: temporary file, fsync, rename), so a reader never sees a
half-written part. A job's parts are named ``<seq>-<key>`` where ``key`` is the first 16 hex digits
of the sha256 of the job's (variant, target, delegate) as JSON -- safe whatever the names hold
(``external:/path/lib.so,key=v``, slashes, spaces) -- and ``seq`` (6 digits) numbers the jobs in the
order they finished (0 is the reference). A job's summary part is written last: a job counts as
finished once ``summary/<seq>-<key>.json`` exists. Rerunning a job writes its parts under a new
``seq`` and then removes the old ones; a reader only looks at the parts of each job's newest summary
part, and resuming deletes the parts no summary part vouches for (left by an interrupted job).

Why folders per kind (``predictions/``, ``metrics/``...) rather than one folder per job: pyarrow
reads ``predictions/`` as one dataset, and a person can open ``summary/`` and read a run's story in
file-name order.

``manifest.json`` -- what was run, written at the start (rewritten on resume)::

    schema_version   int     version of this layout (SCHEMA_VERSION); readers refuse newer ones
    created          str     ISO 8601 UTC time the run directory was first written
    updated          str     ISO 8601 UTC time the manifest was last written (differs after a resume)
    config_hash      str     sha256 of the canonical JSON of {config without [run] targets,
                             devices_file, retries, shard_samples, executor and address,
                             dataset.sha256, model.sha256}; a resume into the same folder must
                             have the same hash (it may select other devices, cut other shards,
                             run on the other executor or a Ray cluster at another address)
    ...              any     everything the caller passed (``evaluate`` writes: config -- the
                             experiment as JSON; versions -- qskew, protocol, python and library
                             versions; dataset -- name, sha256, description, num_classes,
                             preprocess, group_counts per split (per cell with several
                             attributes), attributes (list of names; absent before schema 3:
                             ["group"]), intersections (bool); model -- source, name/path, seed,
                             sha256; calibration -- size, strategy, seed, group_shares, sha256 or
                             null; variants -- one ModelArtifact.to_json() per variant; targets --
                             device properties and inventory entry per device name, kept
                             for every device of earlier sessions too; plan -- every job the
                             sweep set out to run, [variant, target, delegate], including the
                             jobs of devices that could not be reached, over every session:
                             what ``qskew signoff`` judges)

``predictions/<seq>-<key>.parquet`` -- one row per test sample of the job (``000000-...`` holds
the reference rows); read together (:func:`harness.rundir.reader.read_run`) they are one table::

    id        string         sample id (unique within a job)
    group     string         the sample's group label; with several group attributes its cell,
                             the values joined by "\u00d7" in the manifest's attribute order
    label     int64          true class
    variant   string         variant name; "reference" for the FP32 Keras model on the host
    target    string         device name; "host" for the reference
    delegate  string         delegate spec as requested; "keras" for the reference
    pred      int64          argmax of the logits (first index on ties)
    logits    list<float32>  the K logits (dequantized for integer outputs)

    Rows of one job are in test-set order; read back, the reference rows come first, then the
    jobs in the order they finished. Every part's parquet schema metadata holds
    ``qskew_schema_version``. Joining a job's rows to the reference rows on ``id`` reproduces its
    metrics exactly (``RunData.per_sample`` does this).

``metrics/<seq>-<key>.csv`` -- the job's rows of the metrics table: one overall row and one row
per group, the columns below except the two attribution and the two step columns, which depend on
other jobs and are computed when reading (:data:`CROSS_JOB_COLUMNS`). Floats are written with
round-trip precision, so a group's paired cell counts come back exactly from n and its rates
(``harness.metrics.cells.cells_from_rates``; what ``qskew signoff`` reads, ``harness.rundir.light``).
Read back (``RunData.metrics``), the table has these columns, in order
(definitions in ``harness.metrics.groups``; rates are fractions in [0, 1], losses in nats)::

    variant, target, delegate   the job
    scope                       "overall", "group" (a group of one attribute) or "cell" (a
                                group of the attributes' intersection)
    attribute                   "sex", "race", "sex\u00d7race"...; "group" for a dataset with one
                                attribute; empty on the overall row (schema 3; read as "group"
                                from older runs)
    group                       group label; empty on the overall row
    n                           number of samples
    small_group                 True when n < 100 (too few samples to read the numbers alone)
    acc_ref, acc                accuracy of the FP32 reference / of the variant
    acc_drop                    acc_ref - acc; positive means the variant is worse
    drop_quantization           acc_ref - accuracy of the same variant on the CPU reference
                                kernels (this device's reference-kernel job, else another
                                device's); NaN when the run has no reference-kernel job of it
    drop_delegate               acc_drop - drop_quantization: what the delegate adds on top
    loss_ref, loss, excess_loss mean cross-entropy of the reference / the variant; loss - loss_ref
    logit_var_ref, logit_var    mean per-sample variance of the logits across classes (ddof 0)
    margin_ref, margin          mean of z_label - max_{k != label} z_k
    flip_rate                   share of samples whose predicted class changed
    flip_right_to_wrong         share the reference got right and the variant wrong
    flip_wrong_to_right         share the reference got wrong and the variant right
    kl                          mean KL(p_ref || p_variant), nats
    logit_mse                   mean over samples of the mean squared logit difference
    psi                         group acc_drop - overall acc_drop; empty (NaN) on overall rows
    max_step_diff               largest |logit difference| in output quantization steps against the
                                same variant's reference-kernel job (the baseline job of
                                drop_quantization); NaN for float outputs, for a variant with no
                                reference-kernel job, and before schema 4 nowhere (computed when read)
    frac_logits_diff            share of the row's logits (n x classes) that differ from that job's:
                                by at least one output step; for float outputs, at all

    Read back, rows are ordered by (variant, target, delegate), the overall row first, then the
    attributes' groups (by attribute, then name), then the cells. Floats are written with full round-trip precision. Failed jobs have no rows.

``placement/<seq>-<key>.csv`` -- which ops of the job ran on the delegate and which on the CPU, as
far as the runtime can tell (columns and sources: ``harness.placement``); read back sorted by job.

``summary/<seq>-<key>.json`` -- ``{"schema_version": 4, "run": entry}``; read back
(``RunData.summary``) as ``{"schema_version": 4, "runs": [entry, ...]}`` in the order the jobs
finished. An entry is ``harness.rundir.entry.SummaryEntry.to_json()`` (the numbers from n to
small_groups: ``harness.metrics.disparity.Disparity``); it has every key, in this order, null where
it does not apply, except the runtime facts, present only where the runner recorded them::

    variant, target, delegate   the job
    status                      "ok" or "failed"
    stage                       where a failed job failed: "convert", "profile" (the device's
                                profile refused the variant), "prepare" (the model the device
                                needs could not be made), "delegate" (the delegate could not be
                                applied or was not confirmed), "run", "outputs" (it ran, but some
                                logits were NaN or infinite: the error names the samples and
                                counts them per group); null when ok
    error                       the error message of a failed job; null when ok
    artifact_sha256             sha256 of the .tflite file that ran
    runtime, runtime_version    the TFLite runtime the runner used (e.g. "ai_edge_litert", "2.3.0")
    delegate_applied            the delegate the runtime actually applied
    batch_size                  batch size the runner used
    latency_ms_per_sample       invoke time per sample in ms: timings.latency_ms_per_sample, else
                                sum(timings.per_batch_s) / n * 1000; null when unknown or failed
    timings                     the job's timings in seconds (object, ``Timings.to_json()`` of
                                harness.records.device): what the runner kind measures -- Python
                                runner: load_s, prepare_s, invoke_s, per_batch_s, total_s;
                                benchmark_model: invocations, init_s, invoke_s, per_batch_s,
                                timing_lines_missing (only when some are missing) -- plus the
                                host's host_push_s, host_run_s, host_pull_s and
                                latency_ms_per_sample (null when unknown); {} for a failed job
    transfer                    what the host moved for the job (object, ``JobTransfer``):
                                bytes_pushed, bytes_pulled, push_s, run_s, pull_s, pushed (bytes
                                by kind: runner, inputs, model, job; 0 when the device had it
                                already); {} for a failed job
    repeat                      null for a job run once; with [run] repeat = N > 1 the device's
                                run-to-run noise (object, ``RepeatNoise``; harness.metrics.noise):
                                runs, failed, identical, max_abs_logit_diff, flip_rate_max,
                                latency_ms_per_sample (list), latency_ms_median/min/max,
                                latency_rel_spread; a job run in several shards has its shards'
                                flip_rate_max weighted by their samples (exact with repeat = 2,
                                an upper bound with more)
    precision_requested, precision_reported   (only where recorded; runner protocol 1.3) the
                                precision asked of the GPU and the one its runtime reports
    gpu_adapter                 (only where recorded) "<adapter> (<backend>)" as the runtime says
    n, acc_ref, acc             overall sample count and accuracies
    overall_drop                overall acc_drop
    worst_group, worst_group_drop   group with the largest acc_drop, and that drop (several
                                attributes: over every attribute's groups, named "sex=Female")
    best_group, best_group_drop     group with the smallest acc_drop, and that drop
    drop_gap                    worst_group_drop - best_group_drop
    psi, psi_group              largest psi (group drop minus overall drop) and its group
    excess_loss_gap             max - min group excess loss (Liu/Tran's phi)
    acc_gap_ref, acc_gap        max - min group accuracy, reference / variant
    small_groups                comma-separated groups and cells with n < 100 ("" if none)
    config_hash                 the manifest's config_hash when the job was written: a resume
                                checks it too, so deleting manifest.json does not bypass the check
    device, attempts            (pooled jobs only) the member that ran it (its first shard) and the
                                attempts that failed on members before
    shards                      (jobs the farm ran) the test-set shards in order: {"index",
                                "sha256", "n", "device"} each; absent in runs written before shards

``shards/<key>-<index>-<sha>.npz`` -- the finished shards of jobs not stored yet
(:mod:`harness.rundir.staging`, :func:`staging_path`): deleted once their job's parts are written.

Older runs (schema 1) hold the same tables as four whole files, rewritten after every job:
``predictions.parquet``, ``metrics.csv`` (with the attribution columns, or without them when written
before they existed), ``summary.json`` (``{"schema_version": 1, "runs": [...]}``) and, when written
after it existed, ``placement.csv``. They still read; resuming one converts it to parts (this schema) once
(:func:`harness.rundir.writer.convert_schema1`).

``lock`` -- locked (``fcntl.flock``) by the one process writing the run, which writes its pid, host
and start time into it (:mod:`harness.rundir.lock`); empty when nobody writes. Not part of the run.

Written later by the commands that read a run (never by RunWriter, which ignores them):
``signoff.json`` -- the last ``qskew signoff`` verdict (``{"schema_version", "verdict", "policy",
"rules": [...]}``, fields documented in ``harness.signoff``), ``signoff-junit.xml`` -- the same
verdict as JUnit XML, ``report/`` -- the HTML report and its PNG charts (``harness.report``),
``analysis.csv``/``layers.csv`` (``qskew analyze``), ``suggested-mixed.json`` (``qskew
suggest-mixed``) and ``delegates.csv`` (``qskew compare-delegates``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

SCHEMA_VERSION = 4
SCHEMA2 = 2  # one group attribute: metrics parts without the attribute column
SCHEMA1 = 1  # the whole-file layout of older runs

MANIFEST_FILE = "manifest.json"
PREDICTIONS_DIR = "predictions"
METRICS_DIR = "metrics"
PLACEMENT_DIR = "placement"
SUMMARY_DIR = "summary"
PART_SUFFIX = {PREDICTIONS_DIR: ".parquet", METRICS_DIR: ".csv", PLACEMENT_DIR: ".csv", SUMMARY_DIR: ".json"}
PART_DIRS = (PREDICTIONS_DIR, METRICS_DIR, PLACEMENT_DIR, SUMMARY_DIR)  # summary last: it marks a job finished
FILES = (MANIFEST_FILE,) + PART_DIRS  # what every schema-2 run directory holds
# A sharded job's finished shards wait here until every shard is in and the job's parts are written
# (then they go): ``<job key>-<shard index>-<first 16 hex digits of the shard's sha256>.npz``.
STAGING_DIR = "shards"
STAGING_SUFFIX = ".npz"

# Schema 1 (older runs): whole files rewritten after every job.
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
PLACEMENT_FILE = "placement.csv"  # absent from schema-1 directories written before it existed
SCHEMA1_FILES = (MANIFEST_FILE, PREDICTIONS_FILE, METRICS_FILE, SUMMARY_FILE)
SCHEMA1_OPTIONAL_FILES = (PLACEMENT_FILE,)

# Outputs of the commands that read a run (not part of the run itself; RunWriter ignores them).
SIGNOFF_FILE = "signoff.json"   # the last `qskew signoff` verdict
SIGNOFF_JUNIT_FILE = "signoff-junit.xml"  # its JUnit XML when --junit names no other file
ANALYSIS_FILE = "analysis.csv"            # `qskew analyze`: per model x group curvature (harness.rundir.analysis_tables)
LAYERS_FILE = "layers.csv"                # `qskew analyze`: per variant x layer x group error
SUGGESTION_FILE = "suggested-mixed.json"  # `qskew suggest-mixed`: the recipe, in its new run directory
DELEGATES_FILE = "delegates.csv"          # `qskew compare-delegates`: its table (harness.delegate_compare)
REPORT_DIR = "report"           # `qskew report`: the HTML page and its PNG charts
LOCK_FILE = "lock"              # held (fcntl.flock) by the one process writing the run (harness.rundir.lock)

Job = tuple[str, str, str]
REFERENCE_JOB: Job = ("reference", "host", "keras")  # (variant, target, delegate) of the FP32 reference rows
REFERENCE_SEQ = 0                                    # the reference's parts sort first
JOB_KEYS = ("variant", "target", "delegate")
PARQUET_SCHEMA_KEY = b"qskew_schema_version"
CSV_ENGINE = "python"  # parses floats with float(): exact round trip (the C parser can be 1 ulp off)
ATTRIBUTION_COLUMNS = ("drop_quantization", "drop_delegate")  # metrics columns computed across jobs
STEP_COLUMNS = ("max_step_diff", "frac_logits_diff")          # so are these (harness.metrics.steps)
CROSS_JOB_COLUMNS = ATTRIBUTION_COLUMNS + STEP_COLUMNS        # never stored in a metrics part
KEY_HEX_DIGITS = 16    # 64 bits of sha256: a collision among a run's jobs is not a practical worry
SEQ_DIGITS = 6         # a million jobs per run directory before names stop sorting by finishing order
PART_NAME = re.compile(rf"^(\d{{{SEQ_DIGITS},}})-([0-9a-f]{{{KEY_HEX_DIGITS}}})$")


def job_key(job: Job) -> str:
    """The hex key naming a job's parts: safe for any variant, target or delegate string."""
    text = json.dumps([str(part) for part in job], ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_HEX_DIGITS]


def part_stem(seq: int, key: str) -> str:
    """``<seq>-<key>``: the file name (without suffix) of one job's parts."""
    return f"{seq:0{SEQ_DIGITS}d}-{key}"


def part_path(run_dir: Path, kind: str, seq: int, key: str) -> Path:
    """Where the part of ``kind`` (one of PART_DIRS) of job ``key`` finished as ``seq`` lives."""
    return Path(run_dir) / kind / f"{part_stem(seq, key)}{PART_SUFFIX[kind]}"


def staging_path(run_dir: Path, key: str, index: int, shard_sha256: str) -> Path:
    """Where shard ``index`` (inputs ``shard_sha256``) of job ``key`` waits for the job's other shards."""
    return Path(run_dir) / STAGING_DIR / f"{key}-{index:06d}-{shard_sha256[:KEY_HEX_DIGITS]}{STAGING_SUFFIX}"


def parse_part(path: Path) -> tuple[int, str] | None:
    """(seq, key) of a part file, or None for a file that is not a part (e.g. a temporary file)."""
    if path.suffix != PART_SUFFIX.get(path.parent.name):
        return None
    match = PART_NAME.match(path.name[: -len(path.suffix)])
    return (int(match.group(1)), match.group(2)) if match else None


def report_dir(run_dir: Path) -> Path:
    """Folder inside a run directory where ``qskew report`` writes its page and charts."""
    return Path(run_dir) / REPORT_DIR


def signoff_junit_path(run_dir: Path) -> Path:
    """Default place of the sign-off's JUnit XML inside a run directory."""
    return Path(run_dir) / SIGNOFF_JUNIT_FILE


def predictions_schema():
    """The arrow schema of every predictions part (columns above, in order)."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("group", pa.string()), ("label", pa.int64()),
                      ("variant", pa.string()), ("target", pa.string()), ("delegate", pa.string()),
                      ("pred", pa.int64()), ("logits", pa.list_(pa.float32()))])


def metrics_columns(stored: bool = False) -> dict[str, str]:
    """Metrics columns (name -> dtype); ``stored`` leaves out those computed when reading."""
    from harness.metrics.names import METRIC_COLUMNS

    return {k: v for k, v in METRIC_COLUMNS.items() if not (stored and k in CROSS_JOB_COLUMNS)}


def schema1_metrics_columns() -> dict[str, str]:
    """Columns of a schema-1 ``metrics.csv`` written with the attribution columns (it never had the
    step columns)."""
    return {k: v for k, v in metrics_columns().items() if k not in STEP_COLUMNS}


def without_attribute(columns: dict[str, str]) -> dict[str, str]:
    """``columns`` as schema 1 and 2 runs wrote them: without ``attribute`` (one attribute, "group")."""
    return {k: v for k, v in columns.items() if k != "attribute"}


def placement_columns() -> dict[str, str]:
    """Placement columns (name -> dtype), defined by ``harness.placement``."""
    from harness.placement import PLACEMENT_COLUMNS

    return dict(PLACEMENT_COLUMNS)
