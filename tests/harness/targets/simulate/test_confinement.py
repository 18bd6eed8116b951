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
    assert {"data", "system", "proc", "dev", "usr"} <= set(listing) and "tmp" not in listing
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

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("switching to another user needs root and setpriv")
    base = Path(tempfile.mkdtemp(prefix="qskew-confine-"))  # not under pytest's 0700 folder
    try:
        root = base / "root"
        for folder in ("proc", "dev", "usr", "data/local/tmp"):
            (root / folder).mkdir(parents=True)
        for name in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{name}"):
                (root / name).symlink_to(os.readlink(f"/{name}"))
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
