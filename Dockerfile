# qskew with its runtimes and Debian's adb client.
#   docker build -t qskew .
#   docker run --rm -v "$PWD/runs:/work/runs" qskew demo --out /work/runs/demo
# Phones over USB need the host's USB bus: add --privileged -v /dev/bus/usb:/dev/bus/usb.
# BASE is the official Python image by default; any Debian bookworm with python3, python3-venv and
# python3-pip works too (CI builds one with debootstrap: .ci/docker-image). qskew goes into a venv,
# so Debian's system Python, which refuses pip installs, is never touched.
# Layers are few and the big one (the Python packages) comes last, after every metadata
# instruction: a storage driver such as vfs copies the whole image for each step after it.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ENV PATH=/opt/qskew/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    QSKEW_CACHE_DIR=/work/.qskew-cache
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends adb make \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && useradd --create-home qskew \
 && mkdir -p /work /opt/qskew /opt/board \
 && chown qskew /work /opt/qskew /opt/board
COPY --chown=qskew . /opt/qskew/src/
USER qskew
WORKDIR /work
ENTRYPOINT ["qskew"]
CMD ["demo"]
# The host runtime (ai-edge-litert) comes with qskew. A second interpreter plays an older board:
# tflite-runtime 2.14 needs numpy<2, so it lives in a venv of its own (/opt/board) the runner can use.
RUN python3 -m venv /opt/qskew/venv \
 && pip install "/opt/qskew/src[mitigate]" \
 && python3 -m venv /opt/board \
 && /opt/board/bin/pip install "tflite-runtime==2.14.0" "numpy<2" \
 && rm -rf /opt/qskew/src/build "$HOME/.cache"
