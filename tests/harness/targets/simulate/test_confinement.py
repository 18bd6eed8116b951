"""The default simulated device's shell is confined to its root (issue 15 item 1), seen through
Debian's real ``adb``: a marker planted on the host outside the device root can be neither listed
nor read, ``/`` is the device root, only /data/local/tmp is writable, and the host's Python runs but
is read-only. Also the error when this host cannot make namespaces."""

import os
import sys
from pathlib import Path

import pytest

from harness.targets import confine
from harness.targets.confine import SandboxError
from harness.targets.simulate.host_root import HostShell

SECRET = "qskew-marker-3f9c1e"


@pytest.fixture
def marker(tmp_path):
    """A file outside the device root, on the host: what a device shell must never reach."""
    folder = tmp_path / "outside-the-device"
    folder.mkdir()
    path = folder / "marker.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def confined(real_adb, make_device):
    device = make_device()
    serial = real_adb.connect(device.address)

    def shell(command: str):
        return real_adb("shell", command, serial=serial, timeout_s=60)
    return device, shell


def test_a_marker_outside_the_root_can_be_neither_listed_nor_read(confined, marker):
    _device, shell = confined
    assert shell("echo reached").stdout == "reached\n"  # the shell itself works
    listed = shell(f"ls -la {marker.parent}")
    assert listed.returncode != 0 and "marker.txt" not in listed.stdout + listed.stderr
    read = shell(f"cat {marker}")
    assert read.returncode != 0 and SECRET not in read.stdout + read.stderr
    found = shell(f"find / -path /proc -prune -o -name {marker.name} -print 2>/dev/null; "
                  f"grep -rs {SECRET} /data /system /etc 2>/dev/null; echo done")
    assert found.stdout == "done\n" and SECRET not in found.stdout
    sneaky = shell(f"cd /data/local/tmp && ln -s {marker} link && cat link; cat /proc/1/root{marker}")
    assert SECRET not in sneaky.stdout + sneaky.stderr


def test_root_is_the_device_root_and_only_data_local_tmp_is_writable(confined):
    device, shell = confined
    listing = shell("ls /").stdout.split()
    assert sorted(listing) == sorted(os.listdir(device.root))  # its own folder, not the host's /
    # the host Python's folders are mounted at their host paths: a venv under /tmp (a CI clone) makes
    # a /tmp holding only that venv, read-only; any other top folder of the host must not be there
    python_tops = {Path(p).resolve().parts[1] for p in (sys.prefix, sys.base_prefix)}
    assert {"data", "system", "proc", "dev", "usr"} <= set(listing) and "tmp" not in set(listing) - python_tops
    for place in ("/x", "/system/x", "/usr/x", "/dev/x", "/proc/sys/kernel/hostname"):
        wrote = shell(f"echo no > {place}")
        assert wrote.returncode != 0 and ("Read-only" in wrote.stderr or "ermission denied" in wrote.stderr), place
    assert not (device.root / "x").exists() and not (device.root / "system" / "x").exists()
    assert shell("echo yes > /data/local/tmp/ok && cat /data/local/tmp/ok").stdout == "yes\n"
    assert (device.root / "data" / "local" / "tmp" / "ok").read_text() == "yes\n"
    assert shell("hostname").stdout == "qskew-sim\n"
    assert shell("ls /proc | grep -c '^[0-9]'").stdout.strip() in {str(n) for n in range(2, 8)}  # its own


def test_the_host_python_runs_but_is_read_only(confined):
    _device, shell = confined
    ran = shell("python3 -c 'import sys, numpy; print(sys.prefix); print(numpy.__file__)'")
    assert ran.returncode == 0, ran.stderr
    prefix, numpy_file = ran.stdout.split()
    assert prefix == sys.prefix and os.path.exists(numpy_file)
    for target in (f"{prefix}/planted", numpy_file):
        wrote = shell(f"python3 -c \"open('{target}', 'a').write('x')\"")
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, target
    assert not os.path.exists(f"{prefix}/planted")


def test_no_way_out_through_chroot_or_mount(confined):
    """Every capability is dropped: uid 0 inside cannot chroot out or remount the root writable."""
    _device, shell = confined
    escape = shell("mkdir -p /data/local/tmp/e && python3 -c \"import os; os.chroot('/data/local/tmp/e')\"")
    assert escape.returncode != 0 and "PermissionError" in escape.stderr
    remount = shell("/usr/bin/mount -o remount,rw / ; /usr/bin/mount -t tmpfs t /data/local/tmp/e; touch /w")
    assert remount.returncode != 0 and "Read-only" in remount.stderr
    assert shell("grep CapEff /proc/self/status").stdout.split()[1] == "0000000000000000"


def test_without_namespace_tools_the_start_says_what_to_install(make_device, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare, nsenter or chroot
    with pytest.raises(SandboxError, match=r"unshare not found on PATH .*\(apt-get install -y util-linux\)"):
        make_device()


def test_without_user_namespaces_a_non_root_start_says_which_and_what_to_do(monkeypatch, tmp_path):
    off = tmp_path / "unprivileged_userns_clone"
    off.write_text("0\n")
    monkeypatch.setattr(confine, "USERNS_FILES", (str(off),))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs user namespaces, which this kernel turns off") as err:
        confine.check_namespaces("the simulated device")
    assert "sysctl -w" in str(err.value) and "run qskew as root" in str(err.value)


def test_a_python_that_would_expose_the_device_root_is_refused(tmp_path):
    """A bind that holds the device root itself would show the device its host path (and its siblings)."""
    folder = tmp_path / "py"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)  # its folder (mounted for it) holds the device root
    shell = HostShell(folder / "devices" / "d", str(folder / "python"))
    with pytest.raises(SandboxError, match="holds the device root"):
        shell.start()


def test_a_user_other_than_root_is_confined_through_a_user_namespace(tmp_path):
    """As nobody (setpriv), the same confinement runs inside a user namespace in which it is root."""
    import shutil
    import subprocess
    import tempfile

    from harness.targets.confine import Confinement, sandbox_command
    from tests.support.confine_root import make_tiny_root

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to another user needs root and setpriv")
    base = Path(tempfile.mkdtemp(prefix="qskew-confine-"))  # not under pytest's 0700 folder
    try:
        root = make_tiny_root(base / "root")
        subprocess.run(["chown", "-R", "65534:65534", str(base)], check=True)
        base.chmod(0o755)
        conf = Confinement(root=root, data_dir=root / "data/local/tmp", hostname="qskew-nobody",
                           binds=(("/usr", "/usr"),), user_ns=True)
        cmd = sandbox_command(conf, ["/bin/sh", "-c", "id -u; hostname; ls /; echo w > /data/local/tmp/w; "
                                     f"cat {tmp_path}/x; touch /x"])
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd.argv],
                              capture_output=True, text=True, env={"PATH": os.environ["PATH"], **cmd.env})
        lines = done.stdout.split()
        assert lines[:2] == ["0", "qskew-nobody"], done.stderr
        assert sorted(lines[2:]) == sorted(os.listdir(root))
        assert (root / "data/local/tmp/w").read_text() == "w\n"
        assert "No such file" in done.stderr and "Read-only file system" in done.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_no_way_out_through_the_network(confined):
    """A host-only service (as the host's adb server on 127.0.0.1:5037 is) cannot be reached from the
    device: its shell has a network namespace of its own (loopback only), and so does its IPC."""
    import socket
    import threading

    _device, shell = confined
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        server.settimeout(30)
        try:
            conn, _ = server.accept()
            conn.sendall(SECRET.encode())
            conn.close()
        except OSError:
            pass
    threading.Thread(target=answer, daemon=True).start()
    try:
        probe = shell("python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', "
                      f"{port}), timeout=5); print(s.recv(64).decode())\"")
    finally:
        server.close()
    assert probe.returncode != 0 and SECRET not in probe.stdout
    assert shell("readlink /proc/self/ns/net").stdout.strip() != os.readlink("/proc/self/ns/net")
    assert shell("readlink /proc/self/ns/ipc").stdout.strip() != os.readlink("/proc/self/ns/ipc")


def test_a_setuid_file_made_by_the_device_cannot_be_run_by_another_host_user(real_adb, make_device):
    """The device's uid 0 owns what it writes, so it can make a setuid-root file in its folder on the
    host; no other host user may reach that folder (it is the owner's alone), even when the folder
    holding it is open to all (a shared cache)."""
    import shutil
    import subprocess
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running as another user needs root and setpriv")
    shared = Path(tempfile.mkdtemp(prefix="qskew-shared-"))  # not under pytest's 0700 folder
    try:
        shared.chmod(0o755)
        device = make_device(root=shared / "device")
        serial = real_adb.connect(device.address)
        made = real_adb("shell", "cp /bin/id /data/local/tmp/suid && chmod 4755 /data/local/tmp/suid && echo made",
                        serial=serial, timeout_s=60)
        assert made.stdout == "made\n"
        planted = device.root / "data/local/tmp/suid"
        assert os.stat(planted).st_mode & 0o4000  # the device could make it
        # through sh: setpriv's own exec of its argument still passes the path lookup as root
        ran = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/bin/sh", "-c",
                              'exec "$0"', str(planted)], capture_output=True, text=True, timeout=60)
        assert ran.returncode != 0 and "euid=0" not in ran.stdout
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_device_ends_when_the_process_that_started_it_dies(tmp_path):
    """Regression: a qskew killed (SIGKILL, OOM) before stopping its simulated device left the device's
    namespaces and PID 1 running for good; PID 1 now ends when its starter's pipe closes."""
    import subprocess
    import time

    script = ("import os, sys\nfrom pathlib import Path\nfrom harness.targets.simulate.host_root import HostShell\n"
              f"shell = HostShell(Path({str(tmp_path / 'dev')!r}), sys.executable)\nshell.start()\n"
              "print(shell.session._proc.pid, flush=True)\nos.kill(os.getpid(), 9)\n")
    started = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    unshare_pid = int(started.stdout.split()[0])
    def running() -> bool:
        try:
            with open(f"/proc/{unshare_pid}/stat") as fh:
                return not fh.read().split(") ", 1)[1].startswith("Z")  # a zombie has exited
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and running():
        time.sleep(0.1)
    alive = running()
    if alive:
        try:
            os.killpg(unshare_pid, 9)  # the device this test started: not left behind
        except ProcessLookupError:
            pass
    assert not alive, "the device outlived the process that started it"


def test_a_python_whose_venv_is_a_symlink_runs_with_its_own_packages(real_adb, make_device, tmp_path):
    """A device Python started through a linked venv folder (e.g. ``.venv-board`` -> elsewhere) finds
    its pyvenv.cfg and site-packages: its prefix is bound at the linked path too (before, only the
    resolved one was, and ``import numpy`` failed inside the device)."""
    linked = tmp_path / "linked-venv"
    linked.symlink_to(sys.prefix, target_is_directory=True)
    device = make_device(python=str(linked / "bin" / "python3"))
    serial = real_adb.connect(device.address)
    ran = real_adb("shell", "python3 -c 'import sys, numpy; print(sys.prefix)'", serial=serial, timeout_s=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(linked)
