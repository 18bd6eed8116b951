"""farm.ray_executor: a sweep on a two-node Ray cluster in this machine, each node with its own device.

The cluster is ``ray.cluster_utils.Cluster``: a head node advertising ``qskew-dev:ray-a`` and a
second node advertising ``qskew-dev:ray-b``, each device a simulated ADB device started by its
actor on its node. The two devices form one pool. A node removed mid-run has the job it was running
retried on the other node; every stored job names the node that ran it, and the predictions equal
those of a local run. Without Ray installed, ``--executor ray`` fails at once naming the extra.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import harness
from harness import cli, config, datasets, rundir
from harness.errors import CommandFailed, ConfigError, JobFailed, QskewError, TargetError
from harness.farm import ray_executor
from harness.farm.ray_executor import Outcome, resource_of

POOL = "sims"
DELEGATES = ["xnnpack", "reference", "builtin"]
DEVICES = "".join(f'[[device]]\nname = "ray-{x}"\nreach = "simulated"\npool = "{POOL}"\n' for x in "ab") \
    + '[[device]]\nname = "solo"\nreach = "simulated"\n'
NODE_CPUS = 1  # two cores shared with others: one CPU per node; actors take none (only their device)


def _experiment(tmp_path: Path, targets, executor: str):
    (tmp_path / "devices.toml").write_text(DEVICES)
    return config.from_dict({"quantize": {"variants": ["fp32"]},
                             "run": {"targets": targets, "devices_file": str(tmp_path / "devices.toml"),
                                     "delegates": DELEGATES, "executor": executor}}, source="test")


@pytest.fixture(scope="module")
def cluster():
    """A head node reaching ray-a and a second node reaching ray-b; the driver joined to it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    root = str(Path(harness.__file__).resolve().parents[1])
    mp = pytest.MonkeyPatch()
    # the nodes' workers import qskew from this checkout, and inherit the session's QSKEW_CACHE_DIR
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": NODE_CPUS, "resources": {resource_of("ray-a"): 1}})
    try:
        node_b = cluster.add_node(num_cpus=NODE_CPUS, resources={resource_of("ray-b"): 1})
        ray.init(address=cluster.address)
        yield cluster, node_b
    finally:
        ray.shutdown()
        cluster.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from support import tiny_models

    return tiny_models.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


def _sources(models):
    from harness.model_source import ModelSource
    from harness.quantize.convert import artifact_of

    int8 = artifact_of(models["int8"], "int8", {"tool": "given"}, None, 64)
    return ModelSource.from_tflite(models["fp32"]), [int8]


def test_a_device_no_node_advertises_is_unreachable_and_named(cluster, tmp_path):
    from harness.farm.schedule import open_devices

    (tmp_path / "devices.toml").write_text(DEVICES + '[[device]]\nname = "ghost"\nreach = "simulated"\n')
    exp = config.from_dict({"run": {"targets": ["ray-a", "ghost"], "executor": "ray",
                                    "devices_file": str(tmp_path / "devices.toml")}}, source="t")
    devices, unreachable = open_devices(exp, lambda s: None)
    try:
        assert [d.spec.name for d in devices] == ["ray-a"]
        assert devices[0].properties["node"] == cluster[0].head_node.node_id
        assert [name for name, _ in unreachable] == ["ghost"]
        assert "no Ray node advertises resource 'qskew-dev:ghost'" in str(unreachable[0][1])
    finally:
        for dev in devices:
            dev.target.close()


def test_qskew_run_executor_ray_runs_on_the_devices_node_and_resumes(cluster, models, tmp_path, capsys):
    (tmp_path / "devices.toml").write_text(DEVICES)
    (tmp_path / "exp.toml").write_text(
        f'[model]\npath = "{models["fp32"]}"\n[quantize]\nvariants = ["fp32"]\n'
        f'[run]\ndevices_file = "{tmp_path / "devices.toml"}"\ndelegates = ["xnnpack"]\nshard_samples = 300\n')
    out = tmp_path / "run"
    assert cli.main(["run", str(tmp_path / "exp.toml"), "--executor", "ray", "--device", "ray-a",
                     "--out", str(out), "--no-progress"]) == 0
    run = rundir.read_run(out)
    assert run.jobs("ok") == [("fp32", POOL, "xnnpack")]  # ray-a is a member of the pool
    assert run.manifest["config"]["run"]["executor"] == "ray"
    assert run.manifest["targets"]["ray-a"]["node"] == cluster[0].head_node.node_id
    shards = run.summary["runs"][0]["shards"]  # 719 test samples in shards of 300, each run by the actor
    assert [(s["index"], s["n"], s["device"]) for s in shards] == [(0, 300, "ray-a"), (1, 300, "ray-a"),
                                                                  (2, 119, "ray-a")]
    assert len(run.logits("fp32", POOL, "xnnpack").ids) == 719
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "exp.toml"), "--executor", "ray", "--device", "ray-a",
                     "--out", str(out), "--no-progress"]) == 0  # the same command again: a resume
    assert "fp32 on sims/xnnpack: already in the run directory, skipped" in capsys.readouterr().err
    assert len(rundir.read_run(out).summary["runs"]) == 1


def test_a_model_file_the_node_cannot_read_travels_through_the_object_store(cluster, models, tmp_path):
    import dataclasses

    import ray

    from harness.paths import cache_dir
    from harness.quantize.convert import artifact_of

    art = artifact_of(models["int8"], "int8", {"tool": "given"}, None, 64)
    elsewhere = dataclasses.replace(art, path=tmp_path / "driver-only" / "int8.tflite")  # not on this "node"
    data = models["int8"].read_bytes()
    local = ray_executor._local_file(elsewhere, {str(elsewhere.path): ray.put(data)})
    assert local.path.parent == cache_dir("ray-models") and local.path.read_bytes() == data
    assert ray_executor._local_file(art, {}) is art  # a file the node can read is used where it is
    assert ray_executor._local_file("xnnpack", {}) == "xnnpack"


def test_a_device_its_node_cannot_reach_fails_with_the_nodes_error(cluster, tmp_path):
    from harness.farm.schedule import open_devices

    (tmp_path / "devices.toml").write_text('[[device]]\nname = "ray-a"\nreach = "adb-tcp"\naddress = "127.0.0.1:1"\n')
    exp = config.from_dict({"run": {"targets": ["ray-a"], "executor": "ray",
                                    "devices_file": str(tmp_path / "devices.toml")}}, source="t")
    with pytest.raises(TargetError) as info:  # nothing opened: the first device's error
        open_devices(exp, lambda s: None)
    assert str(info.value).startswith("[ray-a] connect: cannot connect to 127.0.0.1:1")
    assert info.value.device == "ray-a"


@pytest.mark.slow
def test_a_pool_over_two_nodes_survives_losing_one_and_predicts_as_a_local_run(cluster, models, tmp_path,
                                                                              monkeypatch):
    """Shards of 300 (3 per job, 18 tickets): b's node is removed while b runs its second shard
    (or, if that one is quicker than the removal, before its third), and that shard runs again
    on a. Triggered from the driver when b starts its second shard, so b always has one in hand
    (removing the node when b's first job was stored left b with nothing to run, at times)."""
    from harness.evaluate import evaluate

    cl, node_b = cluster
    nodes = {"ray-a": cl.head_node.node_id, "ray-b": node_b.node_id}
    data = datasets.load("digits-groups")
    source, extra = _sources(models)
    real_executor, b_calls, removed = ray_executor.executor, [], threading.Event()

    def remove_b():
        time.sleep(0.2)
        cl.remove_node(node_b, allow_graceful=False)
        removed.set()

    def executor(ctx):
        execute = real_executor(ctx)

        def on_b_second_shard(ctx, dev, job):
            if dev.spec.name == "ray-b":
                b_calls.append(job.label())
                if len(b_calls) == 2:
                    threading.Thread(target=remove_b, daemon=True).start()
            return execute(ctx, dev, job)
        return on_b_second_shard

    monkeypatch.setattr(ray_executor, "executor", executor)
    import ray

    real_put, puts = ray.put, []
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    out, lines = tmp_path / "ray", []
    exp = _experiment(tmp_path, [POOL], "ray")
    exp = dataclasses.replace(exp, run=dataclasses.replace(exp.run, shard_samples=300))
    evaluate(exp, data, source, out, progress=False, echo=lines.append, extra_artifacts=extra)
    assert removed.is_set()
    assert sorted(puts) == ["GroupedDataset"] * 3 + ["bytes", "bytes"]  # each shard once, each model file once

    run = rundir.read_run(out)
    jobs = {(v, POOL, d) for v in ("fp32", "int8") for d in DELEGATES}
    assert set(run.jobs()) == jobs and not run.jobs("failed")
    entries = run.summary["runs"]
    assert all(e["device"]["node"] == nodes[e["device"]["name"]] for e in entries)  # ran where its device is
    shards = [s for e in entries for s in e["shards"]]
    assert len(shards) == 18 and {s["device"] for s in shards} == {"ray-a", "ray-b"}
    attempts = [(e, a) for e in entries for a in e.get("attempts") or ()]
    assert len(attempts) == 1
    entry, attempt = attempts[0]
    assert attempt["device"] == "ray-b" and "Ray node is lost" in attempt["error"]
    assert entry["shards"][attempt["shard"]]["device"] == "ray-a"  # the lost shard, run again on a
    farm = json.loads((out / "farm.json").read_text())
    assert "ray-b" in farm["drained"]

    local = tmp_path / "local"
    evaluate(_experiment(tmp_path, ["solo"], "local"), data, source, local, progress=False, extra_artifacts=extra)
    here = rundir.read_run(local)
    for variant, _, delegate in jobs:
        a, b = run.logits(variant, POOL, delegate), here.logits(variant, "solo", delegate)
        assert list(a.ids) == list(b.ids) and len(a.ids) == len(data.subset("test"))
        np.testing.assert_array_equal(a.values, b.values)


def test_an_error_crosses_the_wire_as_itself():
    """An actor's JobFailed or CommandFailed is rebuilt on the driver with its text and attributes
    (their __init__ takes other arguments than the text, so plain pickling would not do)."""
    from harness.errors import FailureStage

    failed = CommandFailed(["python3", "-m", "runner"], 137, "Killed", device="ray-b")
    back = pickle.loads(pickle.dumps(Outcome(error=(type(failed), str(failed), dict(vars(failed))))))
    with pytest.raises(CommandFailed) as info:
        back.result()
    assert str(info.value) == str(failed) and info.value.device == "ray-b" and info.value.returncode == 137
    refused = JobFailed("profile: no", FailureStage.PROFILE)
    with pytest.raises(JobFailed) as info:
        Outcome(error=(JobFailed, str(refused), dict(vars(refused)))).result()
    assert info.value.stage is FailureStage.PROFILE and str(info.value) == "profile: no"
    assert Outcome(value="a run").result() == "a run"
    bug = ray_executor.outcome_of(lambda: {}["missing"], "ray-b")
    with pytest.raises(QskewError, match=r"^device ray-b on .*: KeyError: 'missing'"):
        bug.result()


def test_without_ray_the_executor_names_the_extra_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "exp.toml").write_text('[data]\ndataset = "no-such-dataset.npz"\n')
    with pytest.raises(ConfigError, match=r"qskew\[ray\]"):
        ray_executor.require_ray()
    code = cli.main(["run", str(tmp_path / "exp.toml"), "--executor", "ray", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'qskew[ray]'" in err
    assert "no-such-dataset" not in err  # failed before the dataset was read


def test_the_executor_is_checked_with_the_experiment(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown \[run\] executor 'dask'; known: local, ray"):
        config.from_dict({"run": {"executor": "dask"}}, source="e.toml")
    with pytest.raises(ConfigError, match=r"\[run\] address 'ray://h:10001' .* needs executor \"ray\""):
        config.from_dict({"run": {"address": "ray://h:10001"}}, source="e.toml")
    (tmp_path / "exp.toml").write_text("")
    assert cli.main(["run", str(tmp_path / "exp.toml"), "--address", "auto", "--out", str(tmp_path / "r")]) == 2
    assert "needs executor \"ray\"" in capsys.readouterr().err
    exp = config.from_dict({"run": {"executor": "ray", "address": "ray://h:10001"}}, source="e.toml")
    assert (exp.run.executor, exp.run.address) == ("ray", "ray://h:10001")


def test_an_address_where_nothing_answers_fails_at_once(tmp_path, capsys):
    import socket

    (tmp_path / "exp.toml").write_text('[data]\ndataset = "no-such-dataset.npz"\n')
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            with pytest.raises(ConfigError, match=f"cannot join the Ray cluster at '{address}': nothing answers"):
                ray_executor.answers(address)
        code = cli.main(["run", str(tmp_path / "exp.toml"), "--executor", "ray", "--address",
                         f"127.0.0.1:{port}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing answers" in err and "no-such-dataset" not in err  # before any slow work
    with pytest.raises(ConfigError, match="'no-port-here' is not auto, HOST:PORT or ray://HOST:PORT"):
        ray_executor.answers("no-port-here")
    ray_executor.answers("auto")  # Ray's to find: it fails at once itself when none runs


def test_ray_resources_are_one_per_device_of_the_hosts_inventory(tmp_path, capsys):
    (tmp_path / "devices.toml").write_text(DEVICES)
    assert cli.main(["devices", "ray-resources", "--devices", str(tmp_path / "devices.toml")]) == 0
    assert json.loads(capsys.readouterr().out) == {"qskew-dev:ray-a": 1, "qskew-dev:ray-b": 1, "qskew-dev:solo": 1}
    assert cli.main(["devices", "ray-resources", "--devices", str(tmp_path / "devices.toml"),
                     "--device", "solo"]) == 0
    assert json.loads(capsys.readouterr().out) == {"qskew-dev:solo": 1}


def test_an_actor_writes_and_hashes_a_shards_inputs_once_however_many_jobs_run_it(cluster, models, monkeypatch):
    """Every call brings the actor a new copy of the shard's rows (Ray deserializes each argument
    anew), so the per-object memory of on_device missed and each job wrote and hashed the shard's
    inputs file again (seconds per job for a shard of 4096 large images). The actor calls DeviceWorker
    as this test does (here, in the driver's process, on the local device)."""
    from harness import on_device
    from harness.farm.inventory import load_inventory
    from harness.farm.shards import ShardJob

    source, (int8,) = _sources(models)
    shard = on_device.shards_of(datasets.load("digits-groups").subset("test"), 300)[1]
    worker = ray_executor.DeviceWorker(load_inventory(None).select(["local"])[0])
    worker.open().result()
    sha = shard.sha256  # the driver's, written and hashed there
    real_write, writes = on_device._write_inputs_file, []
    monkeypatch.setattr(on_device, "_write_inputs_file", lambda test: writes.append(1) or real_write(test))
    options = config.from_dict({}, source="t").run
    bare = ShardJob(int8, "xnnpack", dataclasses.replace(shard, data=None))
    try:
        runs = [worker.run(bare, pickle.loads(pickle.dumps(shard.data)), options, {}, sha).result()
                for _ in range(3)]  # three jobs of the shard, each with its own copy of the rows
    finally:
        worker.close()
    assert len(writes) == 1  # by the actor, for its first job of the shard
    assert all(r.ok for r in runs) and all(np.array_equal(r.logits, runs[0].logits) for r in runs)
    assert runs[1].transfer.pushed.get("inputs", 0) == 0  # the device's copy is reused as before


def test_a_file_at_the_drivers_path_with_other_bytes_on_the_node_is_not_the_model(cluster, models, tmp_path):
    """The node has a file at the driver's path, but another one (an older model.tflite in the same
    folder on that host): the copy Ray carried runs, not that file (whose sha256 the runner would
    refuse, failing the job as if the model were broken)."""
    import dataclasses

    import ray

    from harness.quantize.convert import artifact_of

    art = artifact_of(models["int8"], "int8", {"tool": "given"}, None, 64)
    there = tmp_path / "exp" / "int8.tflite"  # the same path on the node, other bytes
    there.parent.mkdir()
    there.write_bytes(models["fp32"].read_bytes())
    driver = dataclasses.replace(art, path=there)
    local = ray_executor._local_file(driver, {str(there): ray.put(models["int8"].read_bytes())})
    assert local.path != there and local.path.read_bytes() == models["int8"].read_bytes()


def test_a_lease_broken_on_a_node_is_reported_by_the_driver(cluster, models, tmp_path):
    """The actor takes its device's lease on its node; a stale lease it breaks there is in the
    driver's farm.json and summary, as on one host (it was only in the node's log)."""
    from harness.evaluate import evaluate
    from harness.farm.inventory import load_inventory
    from harness.farm.leases import lease_dir, lease_key

    (tmp_path / "devices.toml").write_text(DEVICES)
    spec = load_inventory(tmp_path / "devices.toml").select(["ray-a"])[0]
    key = lease_key(spec)  # the nodes share this machine's lease folder
    (lease_dir() / f"{key}.lease").write_text('{"pid": 999999999, "host": "gone-host"}')
    exp = config.from_dict({"quantize": {"variants": ["fp32"]},
                            "run": {"targets": ["ray-a"], "devices_file": str(tmp_path / "devices.toml"),
                                    "delegates": ["xnnpack"], "executor": "ray"}}, source="test")
    source, _ = _sources(models)
    lines: list[str] = []
    evaluate(exp, datasets.load("digits-groups"), source, tmp_path / "run", progress=False, echo=lines.append)
    broken = json.loads((tmp_path / "run" / "farm.json").read_text())["leases_broken"]
    assert [b["key"] for b in broken] == [key] and "gone-host" in broken[0]["holder"]


def test_a_driver_that_loses_its_ray_client_connection_stops_with_one_clear_error(cluster, models, monkeypatch):
    """With ``--address ray://...`` (Ray Client) a lost connection makes ray.get raise a bare
    ConnectionError, which reached the CLI as a traceback. Ray Client's server does not start on
    the build machine (its per-client server timed out), so ray.get raises it here as Ray Client
    does: the error is a QskewError saying what was lost and that a rerun resumes; it is no device
    reason (retrying on another member cannot help)."""
    import types

    import ray

    from harness.farm.job import device_reason
    from harness.farm.shards import ShardJob
    from harness.on_device import shards_of

    def lost(*args, **kwargs):
        raise ConnectionError("Failed during this or a previous request. Exception that broke the "
                              "connection: <_MultiThreadedRendezvous of RPC that terminated>")

    shard = shards_of(datasets.load("digits-groups").subset("test"), 4096)[0]
    ctx = types.SimpleNamespace(exp=config.from_dict({}, source="t"), progress=None)
    dev = types.SimpleNamespace(spec=types.SimpleNamespace(name="ray-a"),
                                target=types.SimpleNamespace(actor=types.SimpleNamespace(
                                    run=types.SimpleNamespace(remote=lambda *a: "ref"))))
    execute = ray_executor.executor(ctx)
    monkeypatch.setattr(ray, "get", lost)
    with pytest.raises(QskewError) as info:
        execute(ctx, dev, ShardJob(_sources(models)[1][0], "xnnpack", shard))
    assert str(info.value).startswith("lost the connection to the Ray cluster (ConnectionError: Failed during")
    assert "rerun the same command" in str(info.value) and not device_reason(info.value)


def test_a_precompiled_edgetpu_model_beside_the_variant_travels_with_it(cluster, models, tmp_path):
    """An Edge TPU device's node looks for ``<variant>_edgetpu.tflite`` beside the model it runs
    (harness.farm.profiles.edgetpu_compiler): on a node that cannot read the driver's folder the
    model came alone into its cache, so the precompiled file was not found and the node had to
    compile (the compiler runs on x86-64 Debian-like hosts only) or failed the job."""
    import dataclasses
    import shutil

    import ray

    from harness.farm.profiles import edgetpu_compiler
    from harness.quantize.convert import artifact_of

    driver = tmp_path / "driver-only"
    driver.mkdir()
    shutil.copy(models["int8"], driver / "int8.tflite")
    (driver / "int8_edgetpu.tflite").write_bytes(b"compiled for the TPU")
    (driver / "int8_edgetpu.log").write_text("Edge TPU Compiler version 16.0.384591198\n")
    art = dataclasses.replace(artifact_of(models["int8"], "int8", {"tool": "given"}, None, 64),
                              path=driver / "int8.tflite")
    files = ray_executor.put_model(ray, art.path)
    assert sorted(Path(name).name for name in files) == ["int8.tflite", "int8_edgetpu.log", "int8_edgetpu.tflite"]
    shutil.rmtree(driver)  # the node cannot read the driver's folder
    local = ray_executor._local_file(art, files)
    found = edgetpu_compiler.precompiled_candidates(local.path, art.sha256)[0]
    assert found.read_bytes() == b"compiled for the TPU" and found.with_suffix(".log").is_file()
