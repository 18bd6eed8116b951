"""Transfer costs over ADB, measured side by side on one simulated device in one run.

Three figures, each a ratio of two things timed here and now:

1. **Throughput against Debian's adb.** Push and pull of a ~50 MB random file through
   ``AdbTarget`` (push = sync SEND to a temp name + ``mv``; pull = sync RECV to a temp file +
   rename) and through ``adb push`` / ``adb pull`` (Debian's adb 1.0.41 with a private server
   port, a temporary HOME and ADB_EMU=0 ADB_MDNS=0 ADB_USB=0, started through
   ``harness.targets.process.run_command``), same device, same file, new destinations (as in
   qskew), alternating who goes first, best of ``ROUNDS`` each. The device runs in its own
   process. Goal: AdbTarget MB/s >= 0.8 x adb's.
2. **TCP_NODELAY.** Stock ``adb_shell.AdbDeviceTcp`` against the same client on the NODELAY
   transport (``harness.targets.adb_link.NoDelayTcpTransport``), on a device that offers only 4096-byte
   payloads: a push of a small file and ``shell('true')`` round trips.
3. **Bytes pushed by a sweep.** ``harness.runners.python.run_job`` for 6 variants x 2 delegates of small_cnn
   (digits-groups, converted with ``harness.quantize.convert``) on a fresh simulated device:
   bytes pushed / (test set .npy + the 6 models + runner files). Goal: <= 1.05.

    .venv/bin/python benchmarks/transfer.py [--size-mb 50] [--rounds 5] [--skip-sweep]

The first run trains small_cnn (seconds) and converts its variants; both are cached.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUNDS = 5                 # best of: the host is shared (2 cores, several jobs) and noisy
SIZE_MB = 50               # the file size for the throughput comparison
SMALL_FILE_BYTES = 128 * 1024  # stock adb-shell at 4096-byte payloads moves ~45 KB/s: seconds, not minutes
SHELL_ROUND_TRIPS = 20     # shell('true') calls per client for the latency figure
LEGACY_PAYLOAD = 4096      # MAX_PAYLOAD_V1: where the stock client suffers most
ADB = "/usr/bin/adb"
ADB_TIMEOUT_S = 120.0      # one adb invocation (a 50 MB push is well under a second here)
VARIANTS = ("fp32", "dynamic", "float16", "int8", "int16x8", "mixed")
DELEGATES = ("xnnpack", "reference")
THROUGHPUT_GOAL = 0.8
SWEEP_GOAL = 1.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=SIZE_MB)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--skip-sweep", action="store_true", help="only the transport figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qskew-transfer-") as tmp:
        tmp = Path(tmp)
        throughput(tmp, int(args.size_mb * 1e6), args.rounds)
        nodelay(tmp, args.rounds)
        if not args.skip_sweep:
            sweep(tmp)
    return 0


# --- 1. throughput against adb ----------------------------------------------------------------

def throughput(tmp: Path, size_bytes: int, rounds: int) -> None:
    from harness.targets.adb import AdbTarget

    src = tmp / "payload.bin"
    src.write_bytes(os.urandom(size_bytes))
    root = tmp / "sim-throughput"
    with _SimulatorProcess(root) as address, _AdbServer(tmp, address) as adb:
        host, port = address
        remote_dir = root / "data" / "local" / "tmp"
        target = AdbTarget("bench", address=f"{host}:{port}", workdir=str(remote_dir / "qskew"),
                           key_path=tmp / "adbkey")  # a throw-away key, not the user's
        # Every destination is new, as in qskew (a content-addressed name is pushed only when
        # missing; pulls land in a fresh folder): replacing a 50 MB file costs tens of ms here.
        dests = {"ours_push": remote_dir / "ours.bin", "adb_push": remote_dir / "adb.bin",
                 "ours_pull": tmp / "o.bin", "adb_pull": tmp / "a.bin"}
        jobs = {"ours_push": lambda: _timed(target.push, src, str(dests["ours_push"])),
                "adb_push": lambda: adb.run("push", str(src), str(dests["adb_push"])),
                "ours_pull": lambda: _timed(target.pull, str(dests["adb_push"]), dests["ours_pull"]),
                "adb_pull": lambda: adb.run("pull", str(dests["ours_push"]), str(dests["adb_pull"]))}
        best = {k: float("inf") for k in jobs}
        for i in range(rounds):  # alternate who goes first, so neither always meets a busier moment
            order = ("ours", "adb") if i % 2 == 0 else ("adb", "ours")
            for op in ("push", "pull"):
                for who in order:
                    dests[f"{who}_{op}"].unlink(missing_ok=True)  # on the sandbox, untimed
                    best[f"{who}_{op}"] = min(best[f"{who}_{op}"], jobs[f"{who}_{op}"]())
        assert (tmp / "o.bin").read_bytes() == (tmp / "a.bin").read_bytes() == src.read_bytes()
        payload = target.max_payload
        target.close()
    mb = size_bytes / 1e6
    print(f"\n1. throughput, {mb:.0f} MB file, simulated device (max payload {payload}), best of {rounds}")
    print(f"   {'':6} {'AdbTarget MB/s':>15} {'adb MB/s':>10} {'ratio':>7}   goal: ratio >= {THROUGHPUT_GOAL}")
    for op in ("push", "pull"):
        ours, theirs = mb / best[f"ours_{op}"], mb / best[f"adb_{op}"]
        ratio = ours / theirs
        print(f"   {op:6} {ours:15.1f} {theirs:10.1f} {ratio:7.2f}   "
              f"{'ok' if ratio >= THROUGHPUT_GOAL else 'UNDER'}")


class _SimulatorProcess:
    """``qskew devices simulate`` in its own process, as a phone is its own machine: the device's
    Python work must not compete with the client under test for this process's GIL."""

    def __init__(self, root: Path):
        root.mkdir()
        self.argv = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
                     "devices", "simulate", "--port", "0", "--root", str(root),
                     "--no-auth"]  # loopback, timing only: Debian's adb here has a key of its own

    def __enter__(self) -> tuple[str, int]:
        import re
        import subprocess

        # a long-lived server, so not run_command (which waits for its command to finish)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if match is None:
            self.proc.kill()
            raise SystemExit(f"the simulated device did not start: {line!r}")
        return match.group(1), int(match.group(2))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class _AdbServer:
    """Debian's adb with a private server port and HOME, connected to one device; killed at exit."""

    def __init__(self, tmp: Path, address: tuple[str, int]):
        self.serial = f"{address[0]}:{address[1]}"
        home = tmp / "adb-home"
        home.mkdir()
        self.env = {"HOME": str(home), "ANDROID_ADB_SERVER_PORT": str(_free_port()),
                    "ADB_EMU": "0", "ADB_MDNS": "0", "ADB_USB": "0"}

    def __enter__(self) -> "_AdbServer":
        self._adb("start-server")
        self._adb("connect", self.serial)
        self._adb("-s", self.serial, "wait-for-device")  # adb connect's own text is not to be trusted
        return self

    def __exit__(self, *exc) -> None:
        self._adb("kill-server", check=False)

    def run(self, *args: str) -> float:
        """Seconds one ``adb -s <device> <args>`` took (client start included, as for a user)."""
        return self._adb("-s", self.serial, *args).duration_s

    def _adb(self, *args: str, check: bool = True):
        from harness.targets.process import run_command

        result = run_command([ADB, *args], timeout_s=ADB_TIMEOUT_S, env=self.env, device="adb")
        if check and result.returncode != 0:
            raise SystemExit(f"adb {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result


# --- 2. TCP_NODELAY ---------------------------------------------------------------------------

def nodelay(tmp: Path, rounds: int) -> None:
    from adb_shell.adb_device import AdbDevice, AdbDeviceTcp

    from harness.targets.simulate.simulator import SimulatedDevice
    from harness.targets.adb_link import NoDelayTcpTransport

    src = tmp / "small.bin"
    src.write_bytes(os.urandom(SMALL_FILE_BYTES))
    with SimulatedDevice(tmp / "sim-legacy", max_payload=LEGACY_PAYLOAD, auth=False) as sim:  # loopback, timing only
        host, port = sim.address
        remote = str(sim.root / "data" / "local" / "tmp" / "small.bin")
        clients = {"stock": AdbDeviceTcp(host, port),
                   "nodelay": AdbDevice(NoDelayTcpTransport(host, port))}
        push_s, shell_s = {}, {}
        for name, client in clients.items():
            client.connect()
            push_s[name] = min(_timed(client.push, str(src), remote) for _ in range(rounds))
            shell_s[name] = min(_timed(_shells, client) for _ in range(rounds)) / SHELL_ROUND_TRIPS
            client.close()
    kb = SMALL_FILE_BYTES / 1e3
    print(f"\n2. stock adb-shell vs TCP_NODELAY, device max payload {LEGACY_PAYLOAD}, best of {rounds}")
    print(f"   {'':22} {'stock':>10} {'nodelay':>10} {'stock/nodelay':>14}")
    print(f"   {f'push {kb:.0f} KB (KB/s)':22} {kb / push_s['stock']:10.1f} {kb / push_s['nodelay']:10.1f} "
          f"{push_s['stock'] / push_s['nodelay']:14.1f}x slower")
    print(f"   {'shell true (ms/call)':22} {1e3 * shell_s['stock']:10.2f} {1e3 * shell_s['nodelay']:10.2f} "
          f"{shell_s['stock'] / shell_s['nodelay']:14.1f}x slower")


def _shells(client) -> None:
    for _ in range(SHELL_ROUND_TRIPS):
        client.shell("true")


# --- 3. bytes pushed by a sweep ---------------------------------------------------------------

def sweep(tmp: Path) -> None:
    from harness import datasets
    from harness.targets.simulate.simulator import SimulatedDevice
    from harness.on_device import _inputs_file
    from harness.runners.python import RUNNER_DIR, RUNNER_FILES, run_job
    from harness.targets.adb import AdbTarget

    ds = datasets.load("digits-groups")
    test = ds.subset("test")
    artifacts = _variants(ds)
    with SimulatedDevice(tmp / "sim-sweep", auth=False) as sim:  # loopback, timing only
        host, port = sim.address
        with AdbTarget("sweep", address=f"{host}:{port}", key_path=tmp / "adbkey",
                       workdir=str(sim.root / "data" / "local" / "tmp" / "qskew")) as target:
            start = time.perf_counter()
            runs = [run_job(target, art, test, d) for art in artifacts for d in DELEGATES]
            wall_s = time.perf_counter() - start
    failed = [(r.variant, r.delegate, r.error) for r in runs if not r.ok]
    pushed = sum(r.transfer.bytes_pushed for r in runs)
    by_kind = {k: sum(r.transfer.pushed.get(k, 0) for r in runs) for k in ("inputs", "model", "runner", "job")}
    inputs_bytes = _inputs_file(test)[0].stat().st_size
    model_bytes = sum(a.size_bytes for a in artifacts)
    runner_bytes = sum((RUNNER_DIR / f).stat().st_size for f in RUNNER_FILES)
    floor = inputs_bytes + model_bytes + runner_bytes
    ratio = pushed / floor
    print(f"\n3. sweep of {len(artifacts)} variants x {len(DELEGATES)} delegates (small_cnn, "
          f"{len(test)} test samples) on one simulated device, {wall_s:.1f} s"
          + (f"; FAILED jobs: {failed}" if failed else ""))
    print(f"   pushed {pushed} bytes (inputs {by_kind['inputs']}, models {by_kind['model']}, "
          f"runner {by_kind['runner']}, job.json {by_kind['job']}); "
          f"pulled {sum(r.transfer.bytes_pulled for r in runs)} bytes")
    print(f"   test set {inputs_bytes} + models {model_bytes} + runner {runner_bytes} = {floor} bytes")
    print(f"   ratio {ratio:.4f}   goal: <= {SWEEP_GOAL}  {'ok' if ratio <= SWEEP_GOAL else 'OVER'}")
    per_job = [r.transfer for r in runs]
    print(f"   per job: push {_mean(t.push_s for t in per_job) * 1e3:.0f} ms, run "
          f"{_mean(t.run_s for t in per_job) * 1e3:.0f} ms, pull {_mean(t.pull_s for t in per_job) * 1e3:.0f} ms"
          " (means)")


def _variants(ds):
    from harness.quantize.calibration import make_calibration
    from harness.quantize.convert import convert_all
    from models.train import train_or_load

    model = train_or_load("small_cnn", ds, seed=0, progress=False).model
    calib = make_calibration(ds.subset("train"), size=256, seed=0)
    arts = convert_all(model, list(VARIANTS), calib, progress=False)
    bad = [(a.variant, a.error) for a in arts if not a.ok]
    if bad:
        raise SystemExit(f"variants failed to convert: {bad}")
    return arts


# --- helpers ----------------------------------------------------------------------------------

def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
