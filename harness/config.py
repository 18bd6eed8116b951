"""Experiment files (TOML) -> a frozen ``Experiment``, validated once, on entry.

An experiment names a dataset, a model, the variants to build, and where and how to run them::

    [experiment]
    name = "digits-demo"                # used in the default run-directory name

    [data]
    dataset = "digits-groups"           # built-in name ("digits-groups", "adult"), a .npz file, a
                                        # folder/CSV of images, or a table (.csv/.parquet) with label
    label = ""                          # a table's class column (a table needs it)
    features = []                       # a table's feature columns; empty: every other column
    groups = []                         # group columns: a table's, or adult's (default sex, race)
    intersections = false               # also report the crossing of the groups (sex x race)
    unknown = "error"                   # a test category the train split lacks: "error" or "ignore"
    # dataset = "hf:PATH_OR_NAME"       # a Hugging Face dataset (save_to_disk folder or cached name),
    input = "image"                     # ... its sample column (images or numbers; default "image"),
    split = "test"                      # ... the split that is the test split (default "test"),
    allow_download = false              # ... and whether a name missing from the cache may download

    [model]
    name = "small_cnn"                  # a built-in model trained (and cached) on the dataset ...
    # path = "my_model.keras"           # ... or your own .keras file / SavedModel folder / .tflite file
    seed = 0                            # training seed for built-in models

    [quantize]
    variants = ["fp32", "dynamic", "float16", "int8", "int16x8", "mixed"]
    calibration_size = 256              # samples drawn from the training split
    calibration_strategy = "random"     # "random", "proportional" (stratified by group), "balanced"
    seed = 0                            # calibration sampling seed
    mixed_layers_regex = ""             # layers raised to 16-bit activations in "mixed" (regex) ...
    mixed_last_n = 2                    # ... or, when the regex is empty, the last N quantizable ops
    fixed_batch = 0                     # 0: variants keep a dynamic batch; N: convert with batch N
                                        # fixed (Edge TPU needs 1; some delegates want static shapes)

    [run]
    targets = ["local"]                 # devices by name or label ("soc=tensor-g2"), from the inventory
    devices_file = ""                   # devices.toml; default $QSKEW_DEVICES, else ./devices.toml
    delegates = ["xnnpack"]             # xnnpack, reference, builtin, gpu, nnapi[:accelerator],
                                        # hexagon, edgetpu[:device], external:<path.so>[,k=v...],
                                        # gpu-fp32, cpu-compiled (LiteRT CompiledModel)
    num_threads = 2
    batch_size = 64
    runtime = "auto"                    # auto, ai_edge_litert, tflite_runtime, tensorflow
    repeat = 1                          # run each job N times: the device's run-to-run noise
    allow_unproven = false              # keep GPU jobs the runtime does not prove ran on the GPU
                                        # (int8 on LiteRT's GPU), labelled "gpu (unproven)"
    allow_partial = false               # run GPU jobs whose model LiteRT's GPU takes only in part
                                        # (else they fail at stage delegate), labelled "gpu (partial)"
    retries = 2                         # a pooled job failing for a device reason runs again on
                                        # another member of its pool, at most this many times
    shard_samples = 4096                # the test set travels and runs in shards of at most this
                                        # many samples: a job is (variant, delegate, shard)
    executor = "local"                  # "local" (threads on this host) or "ray" (actors on the
                                        # Ray nodes that reach the devices; needs qskew[ray])
    address = ""                        # the Ray cluster ("auto", "ray://host:10001"); "" = auto

Every key is optional except that a model needs ``name`` or ``path``. Unknown tables or keys are
errors that name the key and the file, so a typo never silently falls back to a default. Relative
paths are resolved against the experiment file's folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from device_runner.protocol import RUNTIMES, parse_delegate
from harness.errors import ConfigError
from harness.quantize.options import CALIBRATION_STRATEGIES
from harness.quantize.variants import get_variant, known_variants

ALL_VARIANTS = tuple(known_variants())  # the registry's names, in its order (defined there once)
DEFAULT_MODEL = "small_cnn"
DEFAULT_DATASET = "digits-groups"
BUILTIN_DATASETS = (DEFAULT_DATASET, "adult")
HF_PREFIX = "hf:"                     # a Hugging Face dataset (harness.datasets.huggingface)
EXECUTORS = ("local", "ray")          # [run] executor: harness.farm.schedule runs jobs with one of these


@dataclass(frozen=True)
class DataConfig:
    dataset: str = DEFAULT_DATASET
    label: str = ""                     # tables only (harness.datasets.tabular)
    features: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    intersections: bool = False
    unknown: str = "error"
    input: str = ""                     # Hugging Face datasets only (harness.datasets.huggingface)
    split: str = ""
    allow_download: bool = False

    def table_options(self):
        """The column options ``harness.datasets.load`` takes."""
        from harness.datasets import TableOptions

        return TableOptions(label=self.label, features=self.features, groups=self.groups,
                            intersections=self.intersections, unknown=self.unknown, input=self.input,
                            split=self.split, allow_download=self.allow_download)


@dataclass(frozen=True)
class ModelConfig:
    name: str | None = DEFAULT_MODEL
    path: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class QuantizeConfig:
    variants: tuple[str, ...] = ALL_VARIANTS
    calibration_size: int = 256
    calibration_strategy: str = "random"
    seed: int = 0
    mixed_layers_regex: str = ""
    mixed_last_n: int = 2
    fixed_batch: int = 0   # 0 = dynamic batch dimension; N >= 1 = converted with batch N fixed


@dataclass(frozen=True)
class RunConfig:
    targets: tuple[str, ...] = ("local",)   # device names or key=value label selectors
    devices_file: str = ""                  # inventory (devices.toml); "" = harness.farm.inventory's default
    delegates: tuple[str, ...] = ("xnnpack",)
    num_threads: int = 2
    batch_size: int = 64
    runtime: str = "auto"
    repeat: int = 1        # times each job runs (the first run's logits are the job's)
    allow_unproven: bool = False  # keep unproven GPU jobs, labelled "<delegate> (unproven)"
    allow_partial: bool = False   # run GPU jobs placed only in part, labelled "<delegate> (partial)"
    retries: int = 2       # device-reason retries of a pooled job on other members (harness.farm.pool)
    shard_samples: int = 4096  # samples per shard of the test set (harness.on_device.shards_of)
    executor: str = "local"  # where jobs run: EXECUTORS
    address: str = ""        # the Ray cluster's address for executor "ray" ("" = "auto")


@dataclass(frozen=True)
class Experiment:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str = "<defaults>"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "quantize": QuantizeConfig, "run": RunConfig}


def load(path: str | Path) -> Experiment:
    """Read and validate an experiment file.

    >>> load("examples/digits.toml").quantize.variants  # doctest: +SKIP
    ('fp32', 'dynamic', 'float16', 'int8', 'int16x8', 'mixed')
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"experiment file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read experiment file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return from_dict(raw, source=str(path), base_dir=path.parent)


def from_dict(raw: Mapping[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> Experiment:
    """Build an Experiment from parsed TOML, checking every key and value."""
    unknown = set(raw) - set(_SECTIONS) - {"experiment"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; known: experiment, {', '.join(_SECTIONS)}")
    head = dict(raw.get("experiment", {}))
    name = _typed(head.pop("name", Path(source).stem if source.endswith(".toml") else "experiment"), str,
                  "[experiment] name", source)
    if head:
        raise ConfigError(f"{source}: unknown key(s) in [experiment]: {sorted(head)}; known: name")
    sections = {key: _section(raw.get(key, {}), cls, key, source) for key, cls in _SECTIONS.items()}
    exp = Experiment(name=name, source=source, **sections)
    exp = _resolve_paths(exp, base_dir)
    validate(exp)
    return exp


def _section(table: Any, cls: type, key: str, source: str):
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [{key}] must be a table")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(table) - set(names)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [{key}]: {sorted(unknown)}; known: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {k: _typed(v, hints[k], f"[{key}] {k}", source) for k, v in table.items()}
    if key == "model" and "path" in values and "name" not in values:
        values["name"] = None
    return cls(**values)


def _typed(value: Any, hint: Any, where: str, source: str) -> Any:
    """``value`` if it has the option's type (a list of strings, or a comma-separated string, for a
    tuple option), else ConfigError naming the file, the key and the expected type. TOML keeps
    true/false apart from numbers and strings, so ``true`` is no thread count and ``"false"`` no
    boolean."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return tuple(value)
        expected = "a list of strings"
    else:
        if any(_is(value, t) for t in allowed if t is not type(None)):
            return value
        expected = " or ".join(_TYPE_NAMES[t] for t in allowed if t is not type(None))
    raise ConfigError(f"{source}: {where} must be {expected}, got {type(value).__name__} {value!r}")


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", float: "a number"}


def _is(value: Any, t: type) -> bool:
    if t is bool or isinstance(value, bool):  # bool is an int in Python, not in TOML
        return t is bool and isinstance(value, bool)
    return isinstance(value, (int, float)) if t is float else isinstance(value, t)


def _resolve_paths(exp: Experiment, base_dir: Path | None) -> Experiment:
    if base_dir is None:
        return exp
    data, model = exp.data, exp.model
    if data.dataset.startswith(HF_PREFIX):  # a relative save_to_disk folder next to the file; else a name
        local = Path(data.dataset[len(HF_PREFIX):]).expanduser()
        if not local.is_absolute() and (base_dir / local).exists():
            data = dataclasses.replace(data, dataset=HF_PREFIX + str(base_dir / local))
    elif data.dataset not in BUILTIN_DATASETS and not Path(data.dataset).is_absolute():
        data = dataclasses.replace(data, dataset=str(base_dir / data.dataset))
    if model.path and not Path(model.path).is_absolute():
        model = dataclasses.replace(model, path=str(base_dir / model.path))
    run = exp.run
    if run.devices_file and not Path(run.devices_file).is_absolute():
        run = dataclasses.replace(run, devices_file=str(base_dir / run.devices_file))
    return dataclasses.replace(exp, data=data, model=model, run=run)


def validate(exp: Experiment) -> None:
    """Raise ConfigError for the first value that cannot work, naming it."""
    src = exp.source
    if not exp.model.name and not exp.model.path:
        raise ConfigError(f"{src}: [model] needs name (a built-in model) or path (your .keras/SavedModel/.tflite)")
    if exp.model.name and exp.model.path:
        raise ConfigError(f"{src}: [model] give name or path, not both")
    if not exp.quantize.variants:
        raise ConfigError(f"{src}: [quantize] variants is empty")
    for v in exp.quantize.variants:
        try:
            get_variant(v)
        except ConfigError as exc:
            raise ConfigError(f"{src}: {exc}") from None
    if exp.quantize.calibration_strategy not in CALIBRATION_STRATEGIES:
        raise ConfigError(f"{src}: unknown calibration_strategy {exp.quantize.calibration_strategy!r}; "
                          f"known: {', '.join(CALIBRATION_STRATEGIES)}")
    if exp.data.unknown not in ("error", "ignore"):
        raise ConfigError(f"{src}: [data] unknown must be \"error\" or \"ignore\", got {exp.data.unknown!r}")
    if exp.quantize.calibration_size < 1:
        raise ConfigError(f"{src}: calibration_size must be >= 1")
    for d in exp.run.delegates:
        try:
            parse_delegate(d)
        except ValueError as exc:
            raise ConfigError(f"{src}: {exc}") from exc
    if exp.run.runtime != "auto" and exp.run.runtime not in RUNTIMES:
        raise ConfigError(f"{src}: unknown runtime {exp.run.runtime!r}; known: auto, {', '.join(RUNTIMES)}")
    if exp.run.num_threads < 1 or exp.run.batch_size < 1 or exp.run.repeat < 1:
        raise ConfigError(f"{src}: num_threads, batch_size and repeat must be >= 1")
    if exp.run.retries < 0:
        raise ConfigError(f"{src}: [run] retries must be >= 0, got {exp.run.retries}")
    if isinstance(exp.run.shard_samples, bool) or exp.run.shard_samples < 1:
        raise ConfigError(f"{src}: [run] shard_samples must be an integer >= 1, got {exp.run.shard_samples!r}")
    if exp.run.executor not in EXECUTORS:
        raise ConfigError(f"{src}: unknown [run] executor {exp.run.executor!r}; known: {', '.join(EXECUTORS)}")
    if exp.run.address and exp.run.executor != "ray":
        raise ConfigError(f"{src}: [run] address {exp.run.address!r} is the Ray cluster's: it needs "
                          f"executor \"ray\" (got {exp.run.executor!r})")
    if exp.quantize.fixed_batch < 0:
        raise ConfigError(f"{src}: [quantize] fixed_batch must be 0 (dynamic) or a batch size >= 1")
    if not exp.run.targets:
        raise ConfigError(f"{src}: [run] targets is empty")
    for t in exp.run.targets:
        if not t.strip() or t.strip().startswith("="):
            raise ConfigError(f"{src}: [run] targets has an empty device name or label selector {t!r}")
