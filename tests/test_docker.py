"""The Docker image runs ``qskew demo`` and prints the per-group table (issue 12, item 7).

CI (``.ci/run``) builds the image with ``.ci/docker-image`` (Docker with vfs, a Debian base from
debootstrap) and names it in QSKEW_DOCKER_IMAGE. Without that variable the test builds the
Dockerfile itself, on QSKEW_DOCKER_BASE if set, else on the Dockerfile's default base. Under
CI=true the test never skips: no docker client or no daemon is a failure. Elsewhere it skips
with the reason when Docker is unavailable.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE_ENV, BASE_ENV = "QSKEW_DOCKER_IMAGE", "QSKEW_DOCKER_BASE"
LOCAL_TAG = "qskew:test"
VARIANTS = ("fp32", "dynamic", "float16", "int8", "int16x8", "mixed")

pytestmark = pytest.mark.slow


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _docker_unavailable() -> str | None:
    """Why Docker cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 60 s"
    if info.returncode != 0:
        return f"no Docker daemon answers `docker info`: {(info.stderr or info.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    problem = _docker_unavailable()
    if problem:
        if _in_ci():
            pytest.fail(f"CI must build the Docker image and run the demo in it, but {problem}")
        pytest.skip(f"Docker unavailable: {problem}")
    if os.environ.get(IMAGE_ENV):
        return os.environ[IMAGE_ENV]
    base = [f"--build-arg=BASE={os.environ[BASE_ENV]}"] if os.environ.get(BASE_ENV) else []
    build = subprocess.run(["docker", "build", "--network", "host", *base, "-t", LOCAL_TAG, str(ROOT)],
                           capture_output=True, text=True, timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert build.returncode == 0, f"docker build failed:\n{(build.stdout + build.stderr)[-3000:]}"
    return LOCAL_TAG


def test_qskew_demo_in_the_container_prints_the_per_group_table(image):
    proc = subprocess.run(["docker", "run", "--rm", "--network", "host", image, "demo", "--no-progress"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"qskew demo in {image} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    out = proc.stdout
    assert re.search(r"^variant\s+target\s+delegate\s+group\s+n\s+acc_ref%\s+acc%\s+drop_pp", out, re.M), out
    for variant in VARIANTS:
        assert re.search(rf"^{variant}\s+local\s+xnnpack\s+\(all\)\s+719\s", out, re.M), (variant, out)
    assert len(re.findall(r"^\s+faint\s+180\s", out, re.M)) == len(VARIANTS), out
    assert re.search(r"^run directory: \S+", out, re.M), out
