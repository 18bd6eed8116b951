"""Two real ``qskew run`` processes over one pool never drive the same device at once.

Both processes run the same experiment (into their own run directories) over one pool of two
simulated devices; each process starts its own simulated ADB device per name on the same file
system, as two qskew processes reach the same phones. The farm's lease history (one interval per
job, with the holder's pid) must show both processes on the devices and, per device, intervals that
do not overlap.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import rundir
from harness.farm import leases

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600


@pytest.mark.slow
def test_two_qskew_runs_over_one_pool_hold_each_device_one_at_a_time(tmp_path):
    devices = tmp_path / "devices.toml"
    devices.write_text("".join(f'[[device]]\nname = "twin-{x}"\nreach = "simulated"\npool = "twins"\n' for x in "12"))
    exp = tmp_path / "exp.toml"
    exp.write_text('[experiment]\nname = "twins"\n[data]\ndataset = "digits-groups"\n[model]\nname = "small_cnn"\n'
                   '[quantize]\nvariants = ["fp32", "int8"]\n'
                   f'[run]\ntargets = ["twins"]\ndevices_file = "{devices}"\ndelegates = ["xnnpack", "reference"]\n')
    env = {**os.environ, leases.ENV_FARM_DIR: str(tmp_path / "farm"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(exp), "--out", str(tmp_path / f"run{i}"),
                               "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [p.communicate(timeout=RUN_TIMEOUT_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    for i in (1, 2):
        assert sorted(rundir.read_run(tmp_path / f"run{i}").jobs()) == sorted(
            (v, "twins", d) for v in ("fp32", "int8") for d in ("xnnpack", "reference"))
    rows = [json.loads(line) for line in (tmp_path / "farm" / "leases" / leases.HISTORY).read_text().splitlines()]
    assert len(rows) == 8 and {r["pid"] for r in rows} == {p.pid for p in procs}
    keys = {r["key"] for r in rows}
    assert any(len({r["pid"] for r in rows if r["key"] == key}) == 2 for key in keys)  # they did contend
    for key in keys:
        spans = sorted((r["start"], r["end"]) for r in rows if r["key"] == key)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), (key, spans)
