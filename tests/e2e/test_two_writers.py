"""Two `qskew run` into one folder: the second fails at once naming the first; the first loses nothing."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import rundir

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["fp32", "dynamic", "float16", "int8"]


@pytest.mark.slow
def test_a_second_qskew_run_into_the_same_folder_fails_at_once(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(f'[experiment]\nname = "two"\n[quantize]\nvariants = {json.dumps(VARIANTS)}\n')
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    qskew = [sys.executable, "-m", "harness.cli", "run", str(toml), "--out", str(out), "--no-progress"]
    first = subprocess.Popen(qskew, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / rundir.LOCK_FILE).exists() or not (out / rundir.LOCK_FILE).read_text().strip():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    start = time.monotonic()
    second = subprocess.run(qskew, capture_output=True, text=True, env=env)
    assert second.returncode == 2
    assert time.monotonic() - start < 20  # at once: no TensorFlow import, no training, no conversion
    assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr
    out_first, err_first = first.communicate(timeout=900)
    assert first.returncode == 0, err_first
    run = rundir.read_run(out)
    assert sorted(run.jobs()) == sorted((v, "local", "xnnpack") for v in VARIANTS)  # nothing lost
    assert len(run.summary["runs"]) == len(VARIANTS)
    assert (out / rundir.LOCK_FILE).read_text() == ""  # released
