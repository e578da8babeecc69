# pricegrid: multi-stage build, slim non-root runtime.
#
#   docker build -t pricegrid .                                  # portable x86-64-v3 kernels
#   docker build --build-arg CPU_TARGET=native -t pricegrid .    # for the build host's CPU only
#   docker run --rm -p 50051:50051 -p 9464:9464 pricegrid
#
# CPU_TARGET is passed to -march: the default x86-64-v3 (AVX2, FMA) runs on any x86-64 server
# of the last decade and still vectorises the kernels with glibc's libmvec. The build records
# the CPU features it may use; `pricegrid serve` refuses to start, naming them, on a machine
# that lacks one (instead of dying of SIGILL at the first batch).
# The base image is an exact Python release (no digest: the same tag on any mirror).
ARG PYTHON_VERSION=3.11.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG CPU_TARGET=x86-64-v3
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proto proto
COPY server server
COPY ext ext
COPY clients clients
COPY console console
COPY tools tools
ENV PRICEGRID_CPU_TARGET=${CPU_TARGET}
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pricegrid \
 && mkdir -p /var/lib/pricegrid && chown pricegrid /var/lib/pricegrid
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER pricegrid
# Plaintext on 0.0.0.0 is allowed here for a container behind a mesh or proxy that terminates
# TLS; to serve TLS itself, mount the files and set PRICEGRID_TLS_CERT / PRICEGRID_TLS_KEY
# (and PRICEGRID_TLS_CLIENT_CA for mutual TLS), and PRICEGRID_ALLOW_PLAINTEXT=0. The metrics
# endpoint (plaintext HTTP) listens on every interface here for Prometheus to scrape the
# container; PRICEGRID_METRICS_HOST=127.0.0.1 keeps it inside.
ENV PRICEGRID_HOST=0.0.0.0 \
    PRICEGRID_ALLOW_PLAINTEXT=1 \
    PRICEGRID_PORT=50051 \
    PRICEGRID_STORE=/var/lib/pricegrid/pricegrid.db \
    PRICEGRID_METRICS_PORT=9464 \
    PRICEGRID_METRICS_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
# market snapshots persist here: mount a volume to keep them across containers
VOLUME /var/lib/pricegrid
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["pricegrid", "health", "--timeout", "2"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pricegrid"]
CMD ["serve"]
