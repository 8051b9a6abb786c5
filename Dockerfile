# syntax=docker/dockerfile:1
# One image for every clinic service: `clinic run <service>` picks it (CLINIC_SERVICE by default).
# Built by CI (no Docker engine on the development machines); linted by hadolint in
# tests/unit/deployment/test_dockerfile.py. See docs/deployment.md.

# ---- builder: a virtualenv with the locked dependencies and the project, nothing else ----------
FROM python:3.11.14-slim-trixie AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first (their layer survives source edits): every artefact pinned and hash-checked,
# wheels only, so the builder needs no compiler either.
# The runtime venv has no pip or setuptools of its own: the builder's pip installs into it (--python).
COPY requirements.lock requirements-build.lock ./
RUN python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --only-binary=:all: \
       -r requirements.lock \
    && python -m pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements-build.lock

# The project itself: a wheel built without fetching anything (the build backend is the hash-checked
# setuptools above), installed without dependencies (they are all in the lock file).
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY application ./application
COPY infrastructure ./infrastructure
COPY process_managers ./process_managers
COPY projections ./projections
COPY interfaces ./interfaces
COPY benchmarks ./benchmarks
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /wheels/clinic_booking-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime: the venv on a clean slim base; no compiler, no pip or setuptools in the venv, no sources
FROM python:3.11.14-slim-trixie AS runtime

LABEL org.opencontainers.image.title="clinic-booking" \
      org.opencontainers.image.description="Event-sourced clinic booking: one image, the command picks the service" \
      org.opencontainers.image.source="https://github.com/clinic/clinic-booking"

# A fixed uid/gid, so Kubernetes' runAsUser/fsGroup and file ownership agree with the image.
RUN groupadd --system --gid 10001 clinic \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin clinic \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/clinic /var/run/clinic/metrics

COPY --from=builder /opt/venv /opt/venv

# Read-only-root friendly: no .pyc written at run time (compiled above); the only writable paths are
# /tmp, CLINIC_DATA_DIR and, when set, PROMETHEUS_MULTIPROC_DIR (emptyDir volumes in Kubernetes).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CLINIC_DATA_DIR=/var/lib/clinic \
    CLINIC_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/clinic
EXPOSE 8000 8443 9000

# The liveness endpoint of whichever service runs (auth listens on 9000, the others on 8000).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; port = '9000' if os.environ.get('CLINIC_SERVICE') == 'auth' else '8000'; r.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=2)"]

ENTRYPOINT ["clinic"]
CMD ["run", "--host", "0.0.0.0"]
