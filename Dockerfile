# qskew with its runtimes and Debian's adb client.
#   docker build -t qskew .
#   docker run --rm -v "$PWD/runs:/work/runs" qskew demo --out /work/runs/demo
# Phones over USB need the host's USB bus: add --privileged -v /dev/bus/usb:/dev/bus/usb.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends adb make \
 && rm -rf /var/lib/apt/lists/*

# The host runtime (ai-edge-litert) comes with qskew. A second interpreter plays an older board:
# tflite-runtime 2.14 needs numpy<2, so it lives in a venv of its own that the runner can use.
RUN python -m venv /opt/board \
 && /opt/board/bin/pip install --no-cache-dir "tflite-runtime==2.14.0" "numpy<2"

WORKDIR /opt/qskew
COPY pyproject.toml README.md ./
COPY harness harness
COPY device_runner device_runner
COPY models models
RUN pip install --no-cache-dir . \
 && useradd --create-home qskew
USER qskew
WORKDIR /work
ENV QSKEW_CACHE_DIR=/work/.qskew-cache
ENTRYPOINT ["qskew"]
CMD ["demo"]
