"""harness/targets/local.py: this machine as a target; files copied atomically, no shell anywhere."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TargetError
from harness.targets.base import Target
from harness.targets.local import LocalTarget

HOSTILE_NAME = "dev ice 'q\" $(touch pwned) ;touch pwned2; `touch pwned3`"
PYTHON39 = Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python"


@pytest.fixture
def target(tmp_path):
    return LocalTarget(tmp_path / "device", name="bench-1")


def test_is_a_target_with_an_absolute_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = LocalTarget(Path("rel"))
    assert isinstance(t, Target) and t.name == "local" and t.python == sys.executable
    assert t.workdir == str(tmp_path / "rel")


def test_push_pull_round_trip_creates_parents_and_keeps_bytes(target, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    remote = os.path.join(target.workdir, "a", "b", "c.bin")
    target.push(src, remote)
    back = tmp_path / "back" / "c.bin"
    target.pull(remote, back)
    assert back.read_bytes() == src.read_bytes()
    assert target.stat(remote).size_bytes == src.stat().st_size
    assert target.sha256(remote) == hashlib.sha256(src.read_bytes()).hexdigest()
    assert [p.name for p in Path(remote).parent.iterdir()] == ["c.bin"]  # no temp file left


def test_push_replaces_an_existing_file_whole(target, tmp_path):
    remote = os.path.join(target.workdir, "f")
    for text in ("first version, longer", "second"):
        (tmp_path / "f").write_text(text)
        target.push(tmp_path / "f", remote)
    assert Path(remote).read_text() == "second"


def test_missing_files(target, tmp_path):
    missing = os.path.join(target.workdir, "nope")
    assert target.stat(missing) is None and target.sha256(missing) is None
    with pytest.raises(TargetError, match="nope") as err:
        target.pull(missing, tmp_path / "x")
    assert err.value.device == "bench-1"
    with pytest.raises(TargetError, match="absent.bin"):
        target.push(tmp_path / "absent.bin", os.path.join(target.workdir, "y"))
    assert not list(Path(target.workdir).glob("*.part"))


def test_mkdirs_is_idempotent(target):
    folder = os.path.join(target.workdir, "x", "y")
    target.mkdirs(folder)
    target.mkdirs(folder)
    assert os.path.isdir(folder)


def test_run_returns_exit_code_and_output_and_honours_cwd(target, tmp_path):
    result = target.run([target.python, "-c", "import os,sys; print(os.getcwd()); sys.exit(3)"],
                        timeout_s=60, cwd=str(tmp_path))
    assert result.returncode == 3 and result.stdout.strip() == str(tmp_path)


def test_run_times_out(target):
    with pytest.raises(CommandTimeout) as err:
        target.run([target.python, "-c", "import time; time.sleep(30)"], timeout_s=0.5)
    assert err.value.device == "bench-1"


def test_hostile_names_are_plain_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = LocalTarget(tmp_path / HOSTILE_NAME)
    src = tmp_path / "s.txt"
    src.write_text("hello")
    remote = os.path.join(t.workdir, HOSTILE_NAME, "f $(id).txt")
    t.push(src, remote)
    assert t.sha256(remote) == hashlib.sha256(b"hello").hexdigest()
    out = t.run([t.python, "-c", "import sys; print(sys.argv[1])", HOSTILE_NAME], timeout_s=60)
    assert out.stdout.strip() == HOSTILE_NAME
    assert not any((tmp_path / n).exists() for n in ("pwned", "pwned2", "pwned3"))


def test_properties_describe_the_machine_and_its_python(target):
    props = target.properties()
    assert props["name"] == "bench-1" and props["kind"] == "local"
    assert props["hostname"] and props["machine"] == platform.machine()
    assert props["python_version"] == platform.python_version()


@pytest.mark.skipif(not PYTHON39.exists(), reason="pyenv Python 3.9.18 is not installed")
def test_properties_ask_another_interpreter_its_version(tmp_path):
    props = LocalTarget(tmp_path, python=str(PYTHON39)).properties()
    assert props["python_version"] == "3.9.18" and props["python"] == str(PYTHON39)


# A stand-in for run.py --serve: echoes lines until the end of its input, then exits.
ECHO_UNTIL_EOF = "import sys\nfor line in sys.stdin:\n    print(line, end='', flush=True)\n"


def _exits(pid: int, within_s: float) -> bool:
    import time
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return True  # exited, waiting to be reaped
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_forgotten_target_ends_its_served_runner(tmp_path):
    """Regression: a LocalTarget dropped without close() left its served runner alive until the
    interpreter exited (subprocess.Popen.__del__ keeps a running child's Popen, with its stdin
    open, in subprocess._active), so one pytest gathered a dozen ~100 MB runners."""
    import gc
    target = LocalTarget(tmp_path)
    served = target.serve([sys.executable, "-c", ECHO_UNTIL_EOF])
    assert served.request("hi", 30, lambda line: 0 if line == "hi" else None).returncode == 0
    pid = served._proc.pid
    del target, served
    gc.collect()
    assert _exits(pid, within_s=10), "the served runner outlived its target"


def test_closing_a_target_ends_its_served_runner(tmp_path):
    with LocalTarget(tmp_path) as target:
        served = target.serve([sys.executable, "-c", ECHO_UNTIL_EOF])
        pid = served._proc.pid
    assert _exits(pid, within_s=10)
