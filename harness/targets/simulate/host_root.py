"""The default simulated device's confinement: its own folder as ``/``, this host's Python read-only.

A simulated device without a board runs this host's Python, but its shell never sees the host's
file system. :class:`HostShell` (the same seam as ``harness.targets.board.device.BoardShell``)
confines every shell of the device with ``harness.targets.confine``: a private mount namespace and a
chroot in which ``/`` is the device's storage folder ``root``, holding

    /data/local/tmp   <root>/data/local/tmp, the only writable place (sync reads and writes here)
    /system/bin       python3, python (launchers of the device's Python) and getprop
    /usr, /bin, ...   the host's /usr (shell tools, shared libraries) and its /bin, /lib, /lib64,
                      /sbin links (or read-only binds where they are folders), /etc/ld.so.cache
    <python prefix>   the device's Python (the host's by default): its prefix and base prefix, and
                      the folders holding numpy and the TFLite runtime, each read-only at its host path
    /proc, /dev       the device's own processes; null, zero, full, random, urandom, tty

Every shell also loses every capability (``setpriv``: no ``chroot``, ``mount`` or raw-device way
out, even as uid 0). The mount points are made in ``root`` (empty folders, links) when the device
starts. Needs Linux namespaces: as root, or as another user with user namespaces enabled; else the
start fails with one error saying which (``confine.check_namespaces``).

Example::

    shell = HostShell(Path("/tmp/dev0"), sys.executable)
    SimulatedDevice(Path("/tmp/dev0")).start()   # makes and starts its HostShell
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Mapping

from harness.targets.confine import DATA_MOUNT, Confinement, SandboxCommand, SandboxError
from harness.targets.confine_session import ConfinedSession
from harness.targets.process import run_command

SYSTEM_BIN = "/system/bin"
STORAGE_MODE = 0o700  # the device's folder: its owner's alone (see HostShell.start)
SHELL_PATH_TAIL = "/usr/local/bin:/usr/bin:/bin"  # host tools (sh, mkdir, sha256sum) after /system/bin
HOST_SYSTEM = ("/usr",)  # bound read-only: the shell's tools and the shared libraries
TOP_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")  # merged-/usr links (or folders)
HOST_FILES = ("/etc/ld.so.cache",)  # the dynamic loader's cache: libraries in multiarch folders
RUNNER_MODULES = ("numpy", "ai_edge_litert", "tflite_runtime", "tensorflow")  # what device_runner imports
DROP_CAPS = ("/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--")
PYTHON_QUERY_TIMEOUT_S = 60.0
# Run by the device's Python on the host (clean env, as in the device): its prefixes and where the
# runner's modules live, found without importing them.
PYTHON_QUERY = """
import importlib.util, json, os, sys
found = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations:
        found[name] = os.path.dirname(list(spec.submodule_search_locations)[0])
print(json.dumps({"prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                               os.path.dirname(os.path.realpath(sys.executable))], "modules": found}))
"""


class HostShell:
    """A simulated device's storage folder, confined with this host's Python; see the module docstring."""

    def __init__(self, storage: Path, python: str):
        self.storage = Path(os.path.realpath(storage))
        self.python = python
        self.session: ConfinedSession | None = None

    @property
    def data_dir(self) -> Path:
        """The host folder that is the device's /data/local/tmp (the only writable place)."""
        return self.storage / DATA_MOUNT.lstrip("/")

    def start(self) -> None:
        """Make the mount points and start the device's confined PID 1; failure raises SandboxError."""
        if self.session is not None and self.session.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The device's uid 0 owns what it writes (as root on the host, host root), so it can make a
        # setuid-root file in /data/local/tmp: no other host user may reach the device's folder.
        os.chmod(self.storage, STORAGE_MODE)
        binds = host_binds(self.python, self.storage)
        make_mount_points(self.storage, binds)
        conf = Confinement(root=self.storage, data_dir=self.data_dir, hostname="qskew-sim", binds=binds,
                           prefix=DROP_CAPS, mark="qskew-sim:", error=SandboxError)
        self.session = ConfinedSession(conf, what=f"the simulated device in {self.storage}").start()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()

    def device_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The environment of a device shell (inside the root)."""
        return {"PATH": f"{SYSTEM_BIN}:{SHELL_PATH_TAIL}", "HOME": DATA_MOUNT, "TMPDIR": DATA_MOUNT,
                "SHELL": "/bin/sh", "LANG": "C.UTF-8", **extra}

    def wrap(self, command: str, env: Mapping[str, str]) -> SandboxCommand:
        """The host argv (and host env additions) running ``sh -c command`` inside the device."""
        if self.session is None:
            raise SandboxError(f"the simulated device in {self.storage} is not started")
        return self.session.command(["/bin/sh", "-c", command], env=env)

    def host_path(self, device_path: str) -> str:
        """The host path of a device path (the storage folder is ``/``; relative paths lie under
        /data/local/tmp, the shell's working folder). The sync service serves /data/local/tmp only."""
        if not device_path.startswith("/"):
            device_path = f"{DATA_MOUNT}/{device_path}"
        return os.path.join(str(self.storage), device_path.lstrip("/"))


def host_binds(python: str, storage: Path) -> tuple[tuple[str, str], ...]:
    """The host paths mounted read-only in the device (each at its own path): /usr, the loader's
    cache, and the device Python's prefixes and runner modules outside them (see the module docstring)."""
    paths = [p for p in HOST_SYSTEM if os.path.isdir(p)]
    paths += [f"/{n}" for n in TOP_LINKS if os.path.isdir(f"/{n}") and not os.path.islink(f"/{n}")]
    paths += [p for p in python_paths(python) if not any(_under(p, q) for q in HOST_SYSTEM)]
    outer = sorted({p for p in paths if not any(p != q and _under(p, q) for q in paths)})
    for path in outer:
        if _under(str(storage), path) or path == "/":
            raise SandboxError(f"the simulated device's Python needs {path} mounted, which holds the device "
                               f"root {storage} itself: keep the device root elsewhere (QSKEW_CACHE_DIR) or "
                               f"give the device another Python")
    files = [f for f in HOST_FILES if os.path.isfile(f)]
    return tuple((p, p) for p in outer + files)


def python_paths(python: str) -> list[str]:
    """The folders the device's Python needs: prefixes, and where numpy and the TFLite runtime live."""
    try:
        done = run_command([python, "-I", "-c", PYTHON_QUERY, *RUNNER_MODULES], timeout_s=PYTHON_QUERY_TIMEOUT_S,
                           env={"PATH": os.defpath}, device="simulated")
        answer = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"the simulated device's Python {python} cannot be started: {exc}") from exc
    if not isinstance(answer, dict):
        raise SandboxError(f"the simulated device's Python {python} cannot be started (exit "
                           f"{done.returncode}): {done.stderr.strip()[-300:]}")
    found = [p for p in answer["prefixes"] + list(answer["modules"].values()) if p and os.path.isdir(p)]
    # a prefix reached through a symlink (a venv that is a link) is bound at both paths: the Python
    # looks for its pyvenv.cfg and site-packages under the path it was started from
    linked = [os.path.abspath(p) for p in found if os.path.realpath(p) != os.path.abspath(p)]
    return [os.path.realpath(p) for p in found] + linked + [_launcher_dir(python)]


def make_mount_points(storage: Path, binds: tuple[tuple[str, str], ...]) -> None:
    """The folders, files and links inside ``storage`` that the confinement mounts onto."""
    for name in ("proc", "dev", "etc"):
        (storage / name).mkdir(exist_ok=True)
    for name in TOP_LINKS:
        host = f"/{name}"
        if os.path.islink(host):
            _link(storage / name, os.readlink(host))
    for _src, dst in binds:
        point = storage / dst.lstrip("/")
        if os.path.isdir(_src):
            point.mkdir(parents=True, exist_ok=True)
        elif not point.exists():
            point.parent.mkdir(parents=True, exist_ok=True)
            point.touch()


def _link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.exists() or path.is_symlink():
        raise SandboxError(f"{path} should be a link to {target} (the host's /{path.name}): remove it")
    path.symlink_to(target)


def _launcher_dir(python: str) -> str:
    """The folder of the ``python`` path itself (a venv's bin/, found next to its pyvenv.cfg)."""
    return os.path.dirname(os.path.abspath(shutil.which(python) or python))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
