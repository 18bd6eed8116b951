"""Run one device-runner job on a board and on the host, for the board tests and benchmark.

A job folder is laid out as ``harness/on_device.py`` lays it out on a device: the runner's files,
the model, the stored samples (``.npy``) and ``job.json`` (``protocol.make_job``), with paths
relative to the job folder. On the board the folder is the device's storage, seen as
/data/local/tmp; on the host the same folder runs through ``python -m device_runner.run``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

import device_runner
from device_runner import protocol
from harness.targets.board.sandbox import DATA_MOUNT, run_in_board
from harness.targets.process import run_command

REPO = Path(__file__).resolve().parents[2]
RUNNER_FILES = device_runner.RUNNER_FILES  # what the host pushes: run.py and the modules it imports
BOARD_JOB_TIMEOUT_S = 600.0  # qemu-user runs tens of times slower than the host
HOST_JOB_TIMEOUT_S = 120.0


def lay_out_job(folder: Path, name: str, model: Path, x: np.ndarray, delegate: str,
                batch_size: int = 16, runtime: str = "auto") -> Path:
    """Write a job folder ``folder/name`` (and the runner beside it, once); returns the job folder."""
    runner = folder / "runner"
    runner.mkdir(parents=True, exist_ok=True)
    for f in RUNNER_FILES:
        shutil.copyfile(REPO / "device_runner" / f, runner / f)
    job = folder / name
    job.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, job / "model.tflite")
    np.save(job / "inputs.npy", np.ascontiguousarray(x), allow_pickle=False)
    spec = protocol.make_job("model.tflite", "inputs.npy", {"scale": 1.0 / 255.0, "offset": 0.0},
                             delegate, num_threads=1, batch_size=batch_size, runtime=runtime)
    (job / protocol.JOB_FILE).write_text(protocol.dumps(spec) + "\n")
    return job


def run_job_in_board(board, folder: Path, name: str) -> tuple[np.ndarray, dict]:
    """Run job ``folder/name`` in the board (``folder`` is its /data/local/tmp); outputs, result."""
    argv = ["python3", f"{DATA_MOUNT}/runner/run.py", f"{DATA_MOUNT}/{name}"]
    done = run_in_board(board, argv, folder, timeout_s=BOARD_JOB_TIMEOUT_S)
    return _outcome(folder / name, done)


def run_job_on_host(folder: Path, name: str) -> tuple[np.ndarray, dict]:
    """Run job ``folder/name`` with the host's runtime (x86-64 kernels)."""
    env = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = run_command([sys.executable, str(folder / "runner" / "run.py"), str(folder / name)],
                       timeout_s=HOST_JOB_TIMEOUT_S, env=env)
    return _outcome(folder / name, done)


def _outcome(job: Path, done) -> tuple[np.ndarray, dict]:
    result_path = job / protocol.DEFAULT_RESULT
    if done.returncode != 0 or not result_path.is_file():
        raise AssertionError(f"runner exited {done.returncode} in {job}: {done.stderr[-2000:]}")
    result = json.loads(result_path.read_text())
    return np.load(job / protocol.DEFAULT_OUTPUTS), result


def step_diffs(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(logits that differ, largest difference) between two integer outputs, in output steps."""
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int((diff > 0).sum()), int(diff.max(initial=0))
