"""How long ``qskew devices check`` takes on a device, with one runner start per probe job against
one served runner for all of them, side by side in one run.

``devices check`` proves each delegate with a real two-sample job (``harness.farm.probe``). On a
board every job used to start Python and LiteRT under qemu (15-26 s each on aarch64 here), so
checking one board took minutes. Where the target keeps a runner up (``run.py --serve``,
``Target.serve``), the probes share one start. This script runs :func:`check_device` on the device
twice per round, alternating: with ``SERVED_RUNNER`` off (a runner per job: the old cost) and on
(whatever the target offers), and prints each probe's time, the totals, their ratio, and whether
the target served the runner at all (a target without ``serve`` gives a ratio near 1, and says so).

    .venv/bin/python benchmarks/devices_check.py [--device board-aarch64] [--rounds 1]

A board needs root and .ci/board-setup (qemu-user-static, arm64/armhf enabled in dpkg).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.farm import probe  # noqa: E402
from harness.farm.inventory import load_inventory  # noqa: E402
from harness.runners import python as python_runner  # noqa: E402


def check_once(spec, artifact, served: bool) -> tuple[float, dict[str, float], bool]:
    """(total s, {delegate: probe s}, whether any job ran on a served runner) of one check."""
    times: dict[str, float] = {}
    used = []
    try_delegate, served_runner = probe._try_delegate, python_runner._served_runner

    def timed(spec_, target, art, delegate):
        start = time.perf_counter()
        try:
            return try_delegate(spec_, target, art, delegate)
        finally:
            times[delegate] = time.perf_counter() - start

    def watched(*args, **kwargs):
        runner = served_runner(*args, **kwargs)
        used.append(runner is not None)
        return runner

    probe._try_delegate, python_runner._served_runner = timed, watched
    python_runner.SERVED_RUNNER = served
    try:
        start = time.perf_counter()
        check = probe.check_device(spec, artifact)
        total = time.perf_counter() - start
    finally:
        probe._try_delegate, python_runner._served_runner = try_delegate, served_runner
        python_runner.SERVED_RUNNER = True
    if check.error:
        raise SystemExit(f"{spec.name}: {check.error}")
    return total, times, any(used)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="board-aarch64")
    ap.add_argument("--devices", type=Path, default=None, help="inventory file (default: the built-in devices)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    spec = load_inventory(args.devices).select([args.device])[0]
    artifact = probe.probe_artifact()
    best: dict[bool, float] = {}
    served_seen = False
    for round_no in range(args.rounds):
        for served in (False, True):
            total, times, used = check_once(spec, artifact, served)
            served_seen |= used
            best[served] = min(best.get(served, total), total)
            probes = ", ".join(f"{d} {s:.1f} s" for d, s in times.items())
            label = "one served runner" if served else "a runner per job"
            print(f"round {round_no + 1}, {label:17}: {total:6.1f} s  ({probes})")
    print(f"{spec.name}: a runner per job {best[False]:.1f} s, served {best[True]:.1f} s, "
          f"ratio {best[False] / best[True]:.2f}x (best of {args.rounds})")
    if not served_seen:
        print(f"note: {spec.name}'s target kept no runner up (Target.serve gave None): both sides started "
              f"a runner per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
