"""The board sandbox: the host argv it builds (unit), and a real aarch64 board entered (slow).

The slow tests check what issue 13 asks of a board shell: ``uname -m`` says aarch64, ``/`` is the
board (nothing of the host's file system), and only /data/local/tmp is writable.
"""

from pathlib import Path

import pytest

from harness.targets.board.build import Board
from harness.targets.board.manifest import Manifest
from harness.targets.board.sandbox import (SETUP_EXIT, SETUP_SCRIPT, run_in_board, sandbox_command,
                                           setup_failure)
from harness.targets.board.spec import BoardError, BoardSpec
from harness.errors import CommandTimeout
from harness.targets.process import CommandResult, run_command

BOARD_TIMEOUT_S = 300.0


def _board(tmp_path, arch="aarch64"):
    return Board(tmp_path / "b", Manifest(BoardSpec(arch), (), (), "2026-01-01T00:00:00+00:00", 1.0))


def test_argv_enters_the_board(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    cmd = sandbox_command(_board(tmp_path), ["uname", "-m"], tmp_path / "data")
    argv = list(cmd.argv)
    assert argv[:8] == ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--uts", "--propagation",
                        "private"]
    assert argv[8:11] == ["/bin/sh", "-c", SETUP_SCRIPT]
    assert argv[11:21] == ["qskew-board", "qskew-board:", str(tmp_path / "b/root"),
                           str((tmp_path / "data").resolve()), "qskew-aarch64",
                           "/usr/lib/binfmt.d/qemu-aarch64.conf", "qemu-aarch64",
                           "1", str(tmp_path / "b/cpuinfo"), "/proc/cpuinfo"]  # 1 bind: no /system mount
    inner = argv[21:]
    assert inner[:4] == ["/usr/bin/env", "-i", "-C", "/data/local/tmp"]
    assert "QEMU_CPU=cortex-a76" in inner and "HOME=/data/local/tmp" in inner
    assert inner[-2:] == ["uname", "-m"]
    assert cmd.env == {"LC_ALL": "C"}


def test_argv_for_armv7l_and_extra_env(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    cmd = sandbox_command(_board(tmp_path, "armv7l"), ["sh", "-c", "echo $X"], tmp_path, cwd="/",
                          env={"X": "1", "QEMU_CPU": "cortex-a15"})
    assert "/usr/lib/binfmt.d/qemu-arm.conf" in cmd.argv and "qemu-arm" in cmd.argv
    assert "X=1" in cmd.argv and "QEMU_CPU=cortex-a15" in cmd.argv and "QEMU_CPU=cortex-a7" not in cmd.argv
    assert cmd.argv[cmd.argv.index("-C") + 1] == "/"


def test_system_dir_is_mounted_read_only_at_system(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    board = _board(tmp_path)
    board.root.mkdir(parents=True)
    cmd = sandbox_command(board, ["true"], tmp_path / "data", system_dir=tmp_path / "sys")
    assert cmd.argv[18:23] == ("2", str(tmp_path / "b/cpuinfo"), "/proc/cpuinfo", str((tmp_path / "sys").resolve()),
                               "/system")
    assert (board.root / "system").is_dir()  # the mount point, made for boards built without it
    assert 'mount --bind "$src" "$root$dst" && mount -o remount,bind,ro "$root$dst"' in SETUP_SCRIPT


def test_setup_makes_the_root_read_only_but_data(tmp_path):
    """The order matters: data is bound before the root is remounted read-only (a submount keeps rw)."""
    script = SETUP_SCRIPT
    assert script.index('mount --bind "$data"') < script.index("remount,bind,ro")
    assert 'grep -v \'^#\' "$conf" > "$bm/register"' in script and '[ ! -e "$bm/$entry" ]' in script
    assert script.index('mount -t proc proc "$root/proc"') < script.index('mount --bind "$src" "$root$dst"')


def test_without_root_or_qemu_the_error_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(BoardError, match="needs root"):
        sandbox_command(_board(tmp_path), ["true"], tmp_path)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BoardError, match="not found on PATH"):
        sandbox_command(_board(tmp_path), ["true"], tmp_path)


def test_setup_failure_is_told_apart_from_the_commands_exit():
    def result(code, err):
        return CommandResult(("x",), code, "", err, 0.1)

    failed = setup_failure(result(SETUP_EXIT, "qskew-board: binfmt_misc cannot be mounted at /x\n"))
    assert isinstance(failed, BoardError) and "binfmt_misc cannot be mounted" in str(failed)
    assert setup_failure(result(SETUP_EXIT, "the command's own 125\n")) is None
    assert setup_failure(result(0, "")) is None


@pytest.mark.slow
def test_a_timeout_kills_every_board_process(aarch64_board, tmp_path):
    """`timeout` makes its own process group; --kill-child still takes it down with unshare."""
    with pytest.raises(CommandTimeout):
        run_in_board(aarch64_board, ["timeout", "600", "sleep", "600"], tmp_path, timeout_s=3)
    left = run_command(["pgrep", "-f", "sleep 600"], timeout_s=10)
    assert left.stdout.strip() == ""


@pytest.mark.slow
def test_uname_says_aarch64(aarch64_board, tmp_path):
    done = run_in_board(aarch64_board, ["uname", "-m"], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    assert (done.returncode, done.stdout) == (0, "aarch64\n")
    py = run_in_board(aarch64_board, ["python3", "-c", "import os, platform; print(os.uname().machine, "
                                      "platform.python_version())"], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    assert py.stdout.split()[0] == "aarch64" and py.stdout.split()[1].startswith("3.11.")


@pytest.mark.slow
def test_root_is_the_board_not_the_host(aarch64_board, tmp_path):
    done = run_in_board(aarch64_board, ["ls", "/"], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    listing = set(done.stdout.split())
    assert {"bin", "usr", "data", "proc"} <= listing
    assert not listing & {"work", "root", "home", "opt", "srv"}  # the host's top folders
    assert Path("/work").is_dir()  # ... which the host has
    cpu = run_in_board(aarch64_board, ["cat", "/proc/cpuinfo"], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    assert "CPU part\t: 0xd0b" in cpu.stdout and "GenuineIntel" not in cpu.stdout and "AuthenticAMD" not in cpu.stdout
    procs = run_in_board(aarch64_board, ["ls", "/proc"], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    assert len([p for p in procs.stdout.split() if p.isdigit()]) < 10  # its own PID namespace


@pytest.mark.slow
def test_only_data_local_tmp_is_writable(aarch64_board, tmp_path):
    script = ("for f in /etc/x /x /usr/x /data/x; do echo no > $f && echo WROTE $f; done; "
              "echo yes > /data/local/tmp/ok && cat /data/local/tmp/ok")
    done = run_in_board(aarch64_board, ["sh", "-c", script], tmp_path, timeout_s=BOARD_TIMEOUT_S)
    assert "WROTE" not in done.stdout and done.stdout == "yes\n"
    assert done.stderr.count("Read-only file system") == 4
    assert (tmp_path / "ok").read_text() == "yes\n"  # the device's storage is this host folder
    assert not (aarch64_board.root / "etc/x").exists()
