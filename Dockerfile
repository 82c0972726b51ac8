# syntax=docker/dockerfile:1.7
# One image for every contract-sync process: the entry point is the `contract-sync` CLI and the
# command picks the service, e.g.
#   docker run IMAGE poller --config /etc/contract-sync/tenants.toml --shard 0/1
#   docker run IMAGE mapper | writer | db migrate | topics ensure | gateway
#
# The default target (`runtime`, the last stage) is the production image: the `services` and `schemas`
# packages and their runtime dependencies only — no simulator, local stack or embedded PostgreSQL.
# `--target devtools` adds the development tools (devtools/) for local use, e.g. the compose file's
# ConnectWise simulator: `docker run IMAGE cw-sim serve --host 0.0.0.0`.
#
# The base is pinned to an exact Python release on an exact Debian release. For fully reproducible
# builds, also pin its digest: --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: compile wheels for the project and its dependencies into a virtualenv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the code changes): exactly the runtime lock, every file
# checked against its hash (requirements/runtime.lock, `make lock`).
COPY requirements/runtime.lock ./requirements/
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock
# Then the code itself (a regular, non-editable install, with the locked build back-end), and the
# build back-end leaves the environment again: the image holds only what runs.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN pip install --no-deps --no-build-isolation . \
 && pip uninstall -y setuptools wheel \
 && python -c "from services.common.db import MIGRATIONS_DIR; assert (MIGRATIONS_DIR / 'env.py').is_file()" \
 && contract-sync --help >/dev/null

# ---- devtools-build: the production virtualenv plus the development tools ---------------------
FROM build AS devtools-build
COPY devtools ./devtools
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock \
 && pip install --no-deps --no-build-isolation ./devtools \
 && pip uninstall -y setuptools wheel \
 && contract-sync cw-sim --help >/dev/null

# ---- base: what every image runs on: an unprivileged user and the environment ------------------
FROM ${PYTHON_IMAGE} AS base
LABEL org.opencontainers.image.title="contract-sync" \
      org.opencontainers.image.description="ConnectWise Manage agreements -> Kafka -> contract records in PostgreSQL" \
      org.opencontainers.image.source="deploy/helm/contract-sync"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    HEALTH_PORT=8081 \
    CONTRACT_SYNC_STATE_DIR=/var/lib/contract-sync
RUN groupadd --system --gid 10001 contract-sync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/contract-sync --create-home \
        --shell /usr/sbin/nologin contract-sync \
 && mkdir -p /etc/contract-sync \
 && chown 10001:10001 /var/lib/contract-sync
WORKDIR /var/lib/contract-sync
EXPOSE 8081
ENTRYPOINT ["contract-sync"]
CMD ["--help"]

# ---- devtools: for local use only (the compose file's simulator) ------------------------------
FROM base AS devtools
COPY --from=devtools-build /opt/venv /opt/venv
USER 10001:10001

# ---- runtime (default): the production virtualenv only, run as an unprivileged user ------------
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
