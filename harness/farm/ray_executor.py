"""The Ray executor: a farm spread over several hosts, one long-lived Ray actor per device.

Each host starts its Ray node advertising one custom resource per device it reaches,
``qskew-dev:<inventory name>`` (``qskew devices ray-resources`` prints them for the host's
inventory). The driver (``qskew run --executor ray``) reads the same inventory, creates one
:class:`DeviceWorker` actor per selected device with that device's resource -- so the actor lands on
the node that reaches it -- and the actor connects to the device there
(:func:`harness.farm.connect.open_target`) and, for each job, takes the device's lease (a flock on
that host; a stale lease it breaks there goes back with the result, into the driver's farm.json)
and runs it (:func:`harness.farm.job.run_shard`). Everything else stays on the
driver, exactly as with the local executor: the pools' queues (which member takes which job,
retries), scoring, and the one run-directory writer; one driver thread per device sends its actor
its tickets and stores each result as it comes back.
Each shard of the test set is put in Ray's object store once per sweep (a ticket travels without
its rows), each model file once per sweep (a node that cannot read the driver's file, or holds
other bytes at its path, writes it into its own cache, with the precompiled Edge TPU model beside
it); an actor writes and hashes each shard's inputs file once, however many jobs bring it that
shard's rows.

What crosses the wire: the actor returns an :class:`Outcome`, a DeviceRun or the error the device
side raised (class, text and attributes, rebuilt on the driver without calling its ``__init__``), so
a JobFailed or TargetError reads the same as on one host. An actor that dies (its node lost) raises
:class:`harness.errors.DeviceLost`: the member is drained and its job retried on another member of
its pool.

>>> actors, unreachable = open_actors(specs, "auto", print)      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, DeviceLost, QskewError, TargetError
from harness.records import ModelArtifact

log = logging.getLogger(__name__)
RESOURCE_PREFIX = "qskew-dev:"   # a node's custom resource per device it reaches: qskew-dev:<name>
INSTALL = "pip install 'qskew[ray]'"
DEFAULT_ADDRESS = "auto"         # the cluster this host's `ray start` joined
OPEN_TIMEOUT_S = 300.0           # an actor connecting to its device (a board boots in minutes)
CLOSE_TIMEOUT_S = 30.0           # an actor closing its device before it is killed
ANSWER_TIMEOUT_S = 5.0           # a cluster address that does not answer fails now (Ray retries for minutes)


def require_ray():
    """The ``ray`` module, or one ConfigError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"executor 'ray' needs Ray, which is not installed: {INSTALL}") from exc
    return ray


def resource_of(name: str) -> str:
    """The custom resource a Ray node advertises for the device ``name`` it reaches."""
    return f"{RESOURCE_PREFIX}{name}"


def node_resources(specs) -> dict[str, int]:
    """The ``ray start --resources`` of a host that reaches the devices ``specs`` (one unit each)."""
    return {resource_of(spec.name): 1 for spec in specs}


def connect(address: str = ""):
    """Join the Ray cluster at ``address`` ("" = ``auto``) unless this process already has; ``ray``."""
    ray = require_ray()
    answers(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address or DEFAULT_ADDRESS, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address or DEFAULT_ADDRESS!r}: {exc} "
                          "(start it with `ray start --head` on one host)") from exc
    return ray


def answers(address: str) -> None:
    """A ConfigError now when nothing listens at a ``host:port`` or ``ray://host:port`` address
    (``ray.init`` would retry it for minutes); ``auto`` is Ray's to find."""
    if address in ("", DEFAULT_ADDRESS, "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"Ray cluster address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=ANSWER_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: nothing answers there ({exc}); "
                          "start it with `ray start --head` on one host") from exc


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an actor returns for a call: its value (a DeviceRun, the device's properties), or the
    error it raised (see the module docstring)."""

    value: Any = None
    error: tuple | None = None   # (exception class, str(err), vars(err))
    leases_broken: tuple = ()    # (lease key, previous holder) of each lease broken on the node

    def result(self):
        """The value, or the error raised again on the driver, with its text and attributes."""
        if self.error is None:
            return self.value
        cls, text, attrs = self.error
        err = cls.__new__(cls)
        Exception.__init__(err, text)
        err.__dict__.update(attrs)
        raise err


def outcome_of(call: Callable[[], Any], device: str) -> Outcome:
    """``call()`` as an Outcome; an error that is no QskewError (a bug) becomes one naming the
    device and the host, so that the driver stops with it."""
    try:
        return Outcome(value=call())
    except QskewError as err:
        return Outcome(error=(type(err), str(err), dict(vars(err))))
    except Exception as err:
        return Outcome(error=(QskewError, f"device {device} on {socket.gethostname()}: "
                                          f"{type(err).__name__}: {err}", {}))


class DeviceWorker:
    """The actor of one device, on the node that reaches it: holds its Target between jobs."""

    def __init__(self, spec):
        self.spec = spec
        self.dev = None
        self.inputs: set[str] = set()  # sha256 of the shard inputs files this actor wrote and hashed

    def open(self) -> Outcome:
        """Connect to the device: its properties, with the node that reached it (``node``, ``hostname``)."""
        return outcome_of(self._open, self.spec.name)

    def _open(self) -> dict:
        import ray

        from harness.farm.connect import open_target
        from harness.farm.job import OpenDevice

        target = open_target(self.spec)
        try:
            props = {**dict(target.properties()), "node": ray.get_runtime_context().get_node_id(),
                     "hostname": socket.gethostname()}
        except BaseException:
            target.close()
            raise
        self.dev = OpenDevice(self.spec, target, props)
        return props

    def run(self, job, data, options, files: dict, inputs_sha: str | None = None) -> Outcome:
        """The device side of one ticket (:func:`harness.farm.job.run_shard`): its DeviceRun.

        ``job`` is the ShardJob without its rows; ``data`` the shard's rows (from the object store:
        a new copy with every call), ``inputs_sha`` the sha256 of their inputs file on the driver.
        The actor writes and hashes a shard's inputs file once; later jobs of the shard reuse it."""
        from harness import on_device
        from harness.farm.job import run_shard

        broken: list[tuple[str, Any]] = []  # the driver reports them (farm.json), as on one host

        def call():
            if inputs_sha in self.inputs:
                on_device.reuse_inputs_file(data, inputs_sha)
            local = dataclasses.replace(job, artifact=_local_file(job.artifact, files),
                                        shard=dataclasses.replace(job.shard, data=data))
            try:
                return run_shard(self.dev, local, options, echo=lambda s: log.info("%s", s),
                                 lease_broken=lambda key, holder: broken.append((key, holder)))
            finally:
                if inputs_sha is not None and on_device.known_inputs_sha(data) == inputs_sha:
                    self.inputs.add(inputs_sha)

        return dataclasses.replace(outcome_of(call, self.spec.name), leases_broken=tuple(broken))

    def close(self) -> None:
        if self.dev is not None:
            self.dev.target.close()
            self.dev = None


def _local_file(part, files: dict):
    """A job's artifact with a path this node can read: the driver's file when it is here with the
    same bytes (same host or shared folder), else the copy Ray carried, written once into this
    node's cache (a file at that path on another host may be another model)."""
    if not isinstance(part, ModelArtifact) or part.path is None:
        return part
    from harness.on_device import sha256_file

    if Path(part.path).is_file() and sha256_file(Path(part.path)) == part.sha256:
        return part
    import ray

    from harness.fsutil import atomic_write_bytes
    from harness.paths import cache_dir

    local = cache_dir("ray-models") / f"{part.sha256 or part.variant}{Path(part.path).suffix}"
    if not local.is_file():
        atomic_write_bytes(local, ray.get(files[str(part.path)]))
    stem = Path(part.path).stem
    for name, ref in files.items():  # its precompiled Edge TPU model and log, as beside the driver's
        if name != str(part.path) and Path(name).parent == Path(part.path).parent:
            beside = local.with_name(local.stem + Path(name).name[len(stem):])
            if not beside.is_file():
                atomic_write_bytes(beside, ray.get(ref))
    return dataclasses.replace(part, path=local)


def put_model(ray, path: Path) -> dict[str, Any]:
    """The object refs of a model file and of what a profile looks for beside it (a precompiled
    ``<stem>_edgetpu.tflite`` and its ``.log``), by the driver's path; :func:`_local_file` writes
    them on a node that cannot read them."""
    from harness.farm.profiles.edgetpu_compiler import COMPILED_SUFFIX

    path = Path(path)
    beside = [path.with_name(f"{path.stem}{COMPILED_SUFFIX}{ext}") for ext in (".tflite", ".log")]
    return {str(p): ray.put(p.read_bytes()) for p in [path] + [b for b in beside if b.is_file()]}


class ActorTarget:
    """The ``target`` of a device opened by the Ray executor: the handle of its actor (the real
    Target lives in the actor). ``close`` closes the device there and ends the actor."""

    def __init__(self, ray, actor, name: str):
        self.ray, self.actor, self.name = ray, actor, name

    def close(self) -> None:
        try:
            self.ray.get(self.actor.close.remote(), timeout=CLOSE_TIMEOUT_S)
        except Exception as exc:  # node lost, or the device hung: the actor is killed all the same
            log.info("device %s: closing its actor: %s", self.name, exc)
        self.ray.kill(self.actor)


def open_actors(specs, address: str, echo: Callable[[str], None]) -> tuple[list[tuple], list]:
    """One actor per device of ``specs``, on the node advertising its resource, connected to it
    there: ([(spec, ActorTarget, properties)], [(name, error)]). A device no node advertises, or
    whose actor cannot connect to it, is unreachable (reported, not fatal while another answers)."""
    ray = connect(address)
    advertised = ray.cluster_resources()
    worker = ray.remote(max_restarts=0, max_concurrency=1)(DeviceWorker)
    started, failed = [], []
    for spec in specs:
        res = resource_of(spec.name)
        if res not in advertised:
            failed.append((spec.name, TargetError(
                f"no Ray node advertises resource {res!r}: start the node that reaches it with "
                f"`ray start --resources '{{\"{res}\": 1}}'` (qskew devices ray-resources)", spec.name)))
            continue
        echo(f"device {spec.name}: connecting ({spec.reach}) on the Ray node advertising {res}")
        actor = worker.options(num_cpus=0, resources={res: 1}).remote(spec)
        started.append((spec, actor, actor.open.remote()))
    opened = []
    for spec, actor, ref in started:
        try:
            props = _opened(ray, ref, spec.name)
        except QskewError as err:
            ray.kill(actor)
            echo(f"device {spec.name}: unreachable ({err})")
            failed.append((spec.name, err))
            continue
        opened.append((spec, ActorTarget(ray, actor, spec.name), props))
    return opened, failed


def _opened(ray, ref, name: str) -> dict:
    """The properties the actor of ``name`` returns once connected; its error, or one naming the device."""
    try:
        return ray.get(ref, timeout=OPEN_TIMEOUT_S).result()
    except ray.exceptions.GetTimeoutError as exc:
        raise TargetError(f"its Ray actor did not connect within {OPEN_TIMEOUT_S:.0f} s (is another qskew "
                          f"run's actor holding {resource_of(name)!r}?)", name) from exc
    except ray.exceptions.RayError as exc:
        raise TargetError(f"its Ray actor failed: {type(exc).__name__}: {_first_line(exc)}", name) from exc


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def executor(ctx) -> Callable:
    """The sweep's ``execute(ctx, dev, job) -> DeviceRun`` (SweepContext.execute): each shard of the
    test set put in the object store once, each model file once, and every ticket run by the
    device's actor (the ShardJob travels without its rows, which its actor gets from the store)."""
    ray = require_ray()
    shards: dict[int, Any] = {}
    files: dict[str, Any] = {}
    lock = threading.Lock()  # one driver thread per device asks for the shards and files

    def refs(job) -> tuple[Any, dict]:
        path = job.artifact.path
        with lock:
            if job.shard.index not in shards:
                shards[job.shard.index] = ray.put(job.shard.data)
            if path is not None and str(path) not in files:
                files[str(path)] = put_model(ray, path)
            return shards[job.shard.index], (files[str(path)] if path is not None else {})

    def execute(ctx, dev, job):
        actor = dev.target.actor
        data, file_refs = refs(job)
        bare = dataclasses.replace(job, shard=dataclasses.replace(job.shard, data=None))
        try:
            outcome = ray.get(actor.run.remote(bare, data, ctx.exp.run, file_refs, job.shard.sha256))
        except ray.exceptions.RayActorError as exc:
            raise DeviceLost(f"its Ray node is lost ({type(exc).__name__}: {_first_line(exc)})",
                             dev.spec.name) from exc
        except ray.exceptions.RayError as exc:  # e.g. an object lost with its node: the device's side
            raise TargetError(f"Ray: {type(exc).__name__}: {_first_line(exc)}", dev.spec.name) from exc
        except ConnectionError as exc:  # Ray Client (ray://): the driver's link to the cluster broke
            raise QskewError(f"lost the connection to the Ray cluster ({type(exc).__name__}: {_first_line(exc)}); "
                             "what finished is stored: rerun the same command to resume") from exc
        for key, holder in outcome.leases_broken:
            ctx.progress.lease_broken(key, holder)
        return outcome.result()

    return execute
