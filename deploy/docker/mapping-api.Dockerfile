# syntax=docker/dockerfile:1
# The mapping-api image (crmsync mapping-api: configuration API, Sync Now, contacts and segments).
# Build it from the repository root:
#   docker build -f deploy/docker/mapping-api.Dockerfile -t crmsync/mapping-api .
# Every service image also carries crmsync-migrate and crmsync-topics from
# libs/common; the Kubernetes Jobs and docker-compose.yaml run them from the
# mapping-api image.

ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

# --- builder: resolve the locked dependencies of this one package into /app/.venv
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# uv checks the lock against every workspace member, so all their pyproject.toml come first.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/emulator/pyproject.toml libs/emulator/
COPY libs/dynamics-emulator/pyproject.toml libs/dynamics-emulator/
COPY services/mapping-api/pyproject.toml services/mapping-api/
COPY services/puller/pyproject.toml services/puller/
COPY services/pusher/pyproject.toml services/pusher/
COPY services/scheduler/pyproject.toml services/scheduler/
# Third-party packages only: this layer is reused until uv.lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --package crmsync-mapping-api
COPY libs/common/src libs/common/src
COPY services/mapping-api/src services/mapping-api/src
# The crmsync packages themselves, as wheels (not editable): the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package crmsync-mapping-api

# --- assets: the console's npm packages as package-lock.json pins them (npm stays out of the runtime)
FROM ${NODE_IMAGE} AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: the interpreter, the virtualenv, the console's assets, an unprivileged user, nothing else
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="crmsync-mapping-api" \
      org.opencontainers.image.description="crmsync mapping-api: configuration API, Sync Now, contacts and segments"
RUN groupadd --system --gid 10001 crmsync \
    && useradd --system --uid 10001 --gid crmsync --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin crmsync
COPY --from=builder /app/.venv /app/.venv
COPY --from=assets /assets/node_modules /app/console-assets
ENV PATH=/app/.venv/bin:$PATH \
    CRMSYNC_CONSOLE_ASSETS=/app/console-assets \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRMSYNC_ENVIRONMENT=production \
    CRMSYNC_HTTP_HOST=0.0.0.0 \
    CRMSYNC_HTTP_PORT=8080
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CRMSYNC_HTTP_PORT', '8080'), timeout=2)"]
CMD ["crmsync-mapping-api"]
