"""Fixtures for device runner tests: tiny real .tflite models and a helper that runs the runner."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import device_runner  # noqa: E402
from device_runner import protocol  # noqa: E402
from harness.targets.process import run_command  # noqa: E402
from support import tiny_models as tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RUNNER_SRC = REPO / "device_runner"
RUNNER_TIMEOUT_S = 120.0  # one tiny job; generous for a loaded 2-core machine
N_SAMPLES = 150           # 64 + 64 + 22: exercises the last, partial batch


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> dict[str, Path]:
    """name -> .tflite path for fp32, int8, int16x8, fixed1 and fixed4 (batch fixed at 1 / 4)."""
    return tiny.build_models(tmp_path_factory.getbasetemp() / "tiny-tflite-models")


@pytest.fixture(scope="session")
def board_runner(tmp_path_factory) -> Path:
    """The runner copied to a folder of its own, as on a board: only the files the host pushes."""
    folder = tmp_path_factory.mktemp("board") / "device_runner"
    folder.mkdir()
    for name in device_runner.RUNNER_FILES:
        shutil.copy(RUNNER_SRC / name, folder / name)
    return folder / "run.py"


@pytest.fixture
def job_folder(tmp_path):
    """make(model, **job options) -> a job folder holding inputs.npy and job.json."""

    def make(model: Path, n: int = N_SAMPLES, inputs: np.ndarray | None = None, **options) -> Path:
        folder = tmp_path / "job"
        folder.mkdir(exist_ok=True)
        np.save(folder / "inputs.npy", tiny.make_inputs(n) if inputs is None else inputs)
        job = protocol.make_job(str(model), "inputs.npy", {"scale": tiny.PREPROCESS_SCALE, "offset": 0.0},
                                **{k: v for k, v in options.items() if k != "protocol"})
        if "protocol" in options:
            job["protocol"] = options["protocol"]
        (folder / protocol.JOB_FILE).write_text(protocol.dumps(job))
        return folder

    return make


@pytest.fixture(scope="session")
def tiny_models_module():
    """make_inputs, PREPROCESS_SCALE, NUM_CLASSES... of tiny_models.py."""
    return tiny


@pytest.fixture(scope="session")
def run_runner():
    """run(runner, job_dir, python=sys.executable, module=False) -> (CommandResult, result dict or None)."""

    def run(runner, job_dir: Path, python: str = sys.executable, module: bool = False):
        script = ["-m", "device_runner.run"] if module else [str(runner)]
        proc = run_command([python, *script, str(job_dir)], timeout_s=RUNNER_TIMEOUT_S, cwd=REPO)
        result_path = job_dir / protocol.DEFAULT_RESULT
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        return proc, result

    return run
