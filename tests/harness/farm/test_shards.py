"""harness/farm/shards.py: shard jobs put back together in test-set order, their measures summed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.farm.shards import (ShardAssembly, ShardResult, combine, combine_repeats, combine_timings,
                                 combine_transfer)
from harness.records import DeviceRun
from harness.records.device import JobTransfer, RepeatNoise, Timings

JOB = ("int8", "pool", "xnnpack")


def _result(index: int, n: int, **run) -> ShardResult:
    logits = np.full((n, 3), float(index), np.float32)
    return ShardResult({"index": index, "sha256": f"{index}" * 64, "n": n, "device": f"d{index}"},
                       DeviceRun(*JOB, artifact_sha256="a", logits=logits, raw=logits.astype(np.int8),
                                 runtime="litert", batch_size=4, **run), {})


def test_a_job_is_complete_when_all_shards_are_in_whatever_their_order():
    assembly = ShardAssembly(3)
    assert assembly.add(JOB, _result(2, 1)) is None and assembly.add(JOB, _result(0, 4)) is None
    assert assembly.have(JOB) == {0, 2}
    parts = assembly.add(JOB, _result(1, 4))
    assert [p.record["index"] for p in parts] == [0, 1, 2] and assembly.have(JOB) == set()
    run = combine(parts)
    assert run.logits[:, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] and run.raw.shape == (9, 3)
    assert (run.runtime, run.batch_size, run.target) == ("litert", 4, "pool")


def test_shards_of_a_known_layout_are_spilled_and_joined_as_one_read_only_mapping(tmp_path, monkeypatch):
    """With the shards' first rows known, each shard's logits go to the job's scratch file as they
    come (out of order here) and leave memory with its raw outputs; the complete job's logits are that
    file mapped read-only, never a concatenated N x K array (benchmarks/memory.py: a 1M-sample job)."""
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path))
    assembly = ShardAssembly(3, starts=[0, 4, 8], rows=9)
    assert assembly.add(JOB, _result(2, 1)) is None and assembly.add(JOB, _result(0, 4)) is None
    parts = assembly.add(JOB, _result(1, 4))
    assert all(p.run.raw is None for p in parts)
    run = combine(parts)
    assert isinstance(run.logits, np.memmap) and run.logits.mode == "r" and not run.logits.flags.writeable
    assert run.logits[:, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] and run.logits.shape == (9, 3)
    assert all(p.run.logits.base is run.logits for p in parts)  # the parts are views of it: no copy
    assert list((tmp_path / "scratch").iterdir()) == []  # the scratch file is unlinked from the start


def test_a_failed_job_closes_its_scratch_file(tmp_path, monkeypatch):
    monkeypatch.setenv("QSKEW_CACHE_DIR", str(tmp_path))
    assembly = ShardAssembly(2, starts=[0, 2], rows=3)
    assembly.add(JOB, _result(0, 2))
    file = assembly._files[JOB]
    assert assembly.fail(JOB) and file.closed and JOB not in assembly._files


def test_a_failed_job_is_failed_once_and_forgets_its_shards():
    assembly = ShardAssembly(2)
    assembly.add(JOB, _result(0, 2))
    assert assembly.fail(JOB) and not assembly.fail(JOB) and assembly.failed(JOB)
    assert assembly.have(JOB) == set() and not assembly.failed(("fp32", "pool", "xnnpack"))


def test_one_shard_is_the_job_itself():
    part = _result(0, 5, timings=Timings(invoke_s=1.0))
    assert combine([part]) is part.run


def test_timings_are_summed_and_latency_is_over_all_samples():
    a = Timings(load_s=1.0, invoke_s=0.4, per_batch_s=(0.2, 0.2), host_push_s=2.0, latency_ms_per_sample=1.0)
    b = Timings(load_s=0.5, invoke_s=0.3, per_batch_s=(0.3,), host_push_s=None, latency_ms_per_sample=4.0)
    got = combine_timings([a, b], [300, 100])
    assert got == Timings(load_s=1.5, invoke_s=pytest.approx(0.7), per_batch_s=(0.2, 0.2, 0.3), host_push_s=2.0,
                          latency_ms_per_sample=pytest.approx((300 * 1.0 + 100 * 4.0) / 400))
    assert combine_timings([a, Timings(invoke_s=0.1)], [1, 1]).latency_ms_per_sample is None
    assert combine_timings([None, None], [1, 1]) is None


def test_transfer_is_summed_per_kind():
    a = JobTransfer(bytes_pushed=110, bytes_pulled=5, push_s=1.0, run_s=2.0, pull_s=0.5,
                    pushed={"inputs": 100, "model": 10})
    b = JobTransfer(bytes_pushed=50, bytes_pulled=5, push_s=0.25, run_s=1.0, pull_s=0.5, pushed={"inputs": 50, "model": 0})
    assert combine_transfer([a, b]) == JobTransfer(bytes_pushed=160, bytes_pulled=10, push_s=1.25, run_s=3.0,
                                                   pull_s=1.0, pushed={"inputs": 150, "model": 10})


def test_repeat_noise_merges_to_the_jobs_bounds():
    def noise(runs, identical, diff, flips, latency):
        return RepeatNoise(runs=runs, failed=(), identical=identical, max_abs_logit_diff=diff, flip_rate_max=flips,
                           latency_ms_per_sample=latency, latency_ms_median=None, latency_ms_min=None,
                           latency_ms_max=None, latency_rel_spread=None)

    got = combine_repeats([noise(2, True, 0.0, 0.0, (1.0, 2.0)), noise(2, False, 0.5, 0.1, (3.0, 2.0))], [100, 100])
    assert (got.runs, got.identical, got.max_abs_logit_diff) == (2, False, 0.5)
    assert got.flip_rate_max == pytest.approx(0.05)  # 10 of 200 samples flipped in the one repeat: exact
    assert got.latency_ms_per_sample == (2.0, 2.0) and got.latency_rel_spread == 0.0


def test_a_small_last_shard_does_not_set_the_jobs_flip_rate():
    """repeat = 2: one repeat, so each shard's flip_rate_max is its flip rate and the job's is their
    sample-weighted mean. The max over shards said 50 % for a job that flipped 1 sample in 4098."""
    def noise(flips):
        return RepeatNoise(runs=2, failed=(), identical=not flips, max_abs_logit_diff=1.0 if flips else 0.0,
                           flip_rate_max=flips, latency_ms_per_sample=(1.0, 1.0), latency_ms_median=1.0,
                           latency_ms_min=1.0, latency_ms_max=1.0, latency_rel_spread=0.0)

    got = combine_repeats([noise(0.0), noise(0.5)], [4096, 2])
    assert got.flip_rate_max == pytest.approx(1 / 4098)
    # more repeats: the weighted mean of the shards' worst runs, an upper bound of the job's worst
    three = combine_repeats([dataclasses.replace(noise(0.02), runs=3), dataclasses.replace(noise(0.5), runs=3)],
                            [98, 2])
    assert three.flip_rate_max == pytest.approx(0.98 * 0.02 + 0.02 * 0.5)


def test_a_job_whose_shards_disagree_on_the_delegate_or_runtime_says_so():
    """Each shard is its own device job: a GPU shard kept unproven (its first batch matched the CPU)
    or run on a pool member with another runtime made the job the first shard's ("gpu", one
    version), which sign-off's require_delegates then passed."""
    from harness.signoff import _applied

    def shard(i, applied, version="2.3.0"):
        return _result(i, 2, delegate_applied=applied, runtime_version=version)

    mixed = combine([shard(0, "gpu"), shard(1, "gpu (unproven)"), shard(2, "gpu")])
    assert mixed.delegate_applied == "gpu (unproven)" and _applied("gpu", mixed.delegate_applied) is None
    other = combine([shard(0, "xnnpack", "2.3.0"), shard(1, "builtin", "2.1.0")])
    assert other.delegate_applied == "xnnpack + builtin" and not _applied("xnnpack", other.delegate_applied)
    assert other.runtime_version == "2.3.0 + 2.1.0"
    same = combine([shard(0, "gpu"), shard(1, "gpu")])
    assert (same.delegate_applied, same.runtime_version) == ("gpu", "2.3.0")
