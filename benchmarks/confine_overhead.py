"""What confining the simulated device's shell costs per job: confined vs plain ``sh -c``, side by side.

Before issue 15 item 1's confinement, the default simulated device ran ``sh -c CMD`` on the host.
Now every shell enters the device's namespaces and root (``nsenter``, ``setpriv``, ``env -i``).
This prints, measured in one run and interleaved (plain, confined, plain, ...):

- ``spawn``: start and wait for ``sh -c true`` (the bare per-shell cost);
- ``python``: ``python3 -c "import numpy, ai_edge_litert.interpreter"`` (what a runner job starts
  with), so the overhead is seen against the job's own start;
- ``adb shell``: an ``adb shell true`` round trip over the ADB wire (adb-shell client) to a device
  whose shells are confined and to one whose shells are plain (the old code path, rebuilt here);
- the device's one-time start (the Python query, ``unshare`` and the mounts).

    .venv/bin/python benchmarks/confine_overhead.py [--rounds 30]

Needs Linux namespaces (root, or user namespaces enabled).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.targets.simulate.simulator import SimulatedDevice  # noqa: E402

PY_IMPORTS = "import numpy, ai_edge_litert.interpreter"


class PlainDevice(SimulatedDevice):
    """The simulated device as it was before the confinement: ``sh -c`` on the host, in ``root``."""

    def spawn_shell(self, command, merge_stderr):
        env = {"PATH": f"{self.root}/system/bin:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root),
               "LANG": "C.UTF-8"}
        return subprocess.Popen(["sh", "-c", command], cwd=self.root, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                start_new_session=True)


def _time(argv, env=None, cwd=None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[-1]!r} failed: {done.stderr.decode()[-300:]}")
    return elapsed


def _pair(name: str, plain: list[float], confined: list[float]) -> None:
    p, c = statistics.median(plain), statistics.median(confined)
    print(f"{name:<10} plain {p * 1e3:8.2f} ms   confined {c * 1e3:8.2f} ms   "
          f"+{(c - p) * 1e3:7.2f} ms   ratio {c / p:5.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    from support.adb_sim import adb_shell_device, session_key, trusted_keys_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        keys = trusted_keys_file(tmp / "keys")
        start = time.perf_counter()
        confined = SimulatedDevice(tmp / "confined", trusted_keys=keys).start()
        started_s = time.perf_counter() - start
        plain = PlainDevice(tmp / "plain", trusted_keys=keys).start()
        try:
            host_env = {"PATH": os.environ.get("PATH", os.defpath)}
            results = {"spawn": ([], []), "python": ([], []), "adb shell": ([], [])}
            adb_plain, adb_conf = (adb_shell_device(d.address) for d in (plain, confined))
            for _ in range(args.rounds):
                for name, command in (("spawn", "true"), ("python", f"python3 -c '{PY_IMPORTS}'")):
                    wrapped = confined.shell.wrap(command, confined.shell_env())
                    results[name][0].append(_time(["sh", "-c", command], env={**host_env,
                                                  "PATH": f"{plain.root}/system/bin:{host_env['PATH']}"}))
                    results[name][1].append(_time(list(wrapped.argv), env={**host_env, **wrapped.env}))
                for index, adb in enumerate((adb_plain, adb_conf)):
                    t = time.perf_counter()
                    adb.shell("true")
                    results["adb shell"][index].append(time.perf_counter() - t)
            print(f"median of {args.rounds} rounds (key {session_key().name}):")
            for name, (p, c) in results.items():
                _pair(name, p, c)
            print(f"device start (once per device): {started_s * 1e3:.0f} ms")
        finally:
            confined.stop()
            plain.stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    raise SystemExit(main())
