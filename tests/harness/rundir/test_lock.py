"""One writer per run directory: a second writer fails at once naming the holder's pid and host."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ResultsError
from harness.rundir import LOCK_FILE, RunWriter, lock

REPO = Path(__file__).resolve().parents[3]
HOLDER = """
import sys, time
from harness.rundir import lock
lock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    """A run directory whose lock another process holds: (run_dir, that process)."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    yield run_dir, proc
    proc.kill()
    proc.wait()


def test_a_second_writer_fails_at_once_naming_the_holder(held):
    run_dir, proc = held
    start = time.monotonic()
    with pytest.raises(ResultsError) as err:
        lock.acquire(run_dir)
    assert time.monotonic() - start < 1.0
    assert f"pid {proc.pid} on host {socket.gethostname()}" in str(err.value)
    assert str(run_dir) in str(err.value)
    assert not lock.holds(run_dir)


def test_a_run_writer_of_a_locked_folder_fails_and_writes_nothing(held):
    run_dir, proc = held
    with pytest.raises(ResultsError, match=f"pid {proc.pid}"):
        RunWriter(run_dir, resume=True)
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]


def test_the_lock_goes_with_its_holder_however_it_dies(held):
    run_dir, proc = held
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with lock.locked(run_dir):
        assert lock.holds(run_dir)
    assert not lock.holds(run_dir)


def test_the_lock_is_reentrant_in_a_process_and_names_its_holder(tmp_path):
    run_dir = tmp_path / "run"
    with lock.locked(run_dir):
        assert f'"pid": {os.getpid()}' in (run_dir / LOCK_FILE).read_text()
        with RunWriter(run_dir, resume=True):  # the CLI's lock and its writer's are one
            pass
        assert lock.holds(run_dir)  # the writer gave back only its own hold
    assert not lock.holds(run_dir)
    assert (run_dir / LOCK_FILE).read_text() == ""


def test_a_closed_writer_frees_the_folder_for_the_next_process(tmp_path):
    run_dir = tmp_path / "run"
    with RunWriter(run_dir):
        pass
    probe = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(60)", ""), str(run_dir)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert probe.stdout.strip() == "locked", probe.stderr


def test_qskew_run_into_a_locked_folder_fails_before_importing_tensorflow(held, tmp_path):
    run_dir, proc = held
    toml = tmp_path / "exp.toml"
    toml.write_text('[quantize]\nvariants = ["fp32"]\n')
    code = ("import sys; from harness.cli import main; rc = main(sys.argv[1:]); "
            "print('tensorflow' in sys.modules); sys.exit(rc)")
    start = time.monotonic()
    second = subprocess.run([sys.executable, "-c", code, "run", str(toml), "--out", str(run_dir)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert second.returncode == 2, second.stderr
    assert second.stdout.strip() == "False"  # failed before the slow part began
    assert f"pid {proc.pid} on host {socket.gethostname()}" in second.stderr
    assert time.monotonic() - start < 20


def test_a_folder_the_lock_created_and_nothing_filled_is_removed_again(tmp_path):
    with lock.locked(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_FILE).exists()
    assert not (tmp_path / "new").exists()  # a command that failed early leaves no trace
    (tmp_path / "old").mkdir()
    with lock.locked(tmp_path / "old"):
        pass
    assert (tmp_path / "old").is_dir()  # a folder that was there stays
