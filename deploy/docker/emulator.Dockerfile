# syntax=docker/dockerfile:1
# The emulator image (crmsync emulator: the Salesforce REST API emulator for demos and tests).
# Build it from the repository root:
#   docker build -f deploy/docker/emulator.Dockerfile -t crmsync/emulator .
# Not for production: docker-compose.yaml runs it as the demo CRM.

ARG PYTHON_IMAGE=python:3.11-slim

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
    uv sync --locked --no-dev --no-install-workspace --package crmsync-emulator
COPY libs/emulator/src libs/emulator/src
# The crmsync packages themselves, as wheels (not editable): the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package crmsync-emulator

# --- runtime: the interpreter, the virtualenv, an unprivileged user, nothing else
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="crmsync-emulator" \
      org.opencontainers.image.description="crmsync emulator: the Salesforce REST API emulator for demos and tests"
RUN groupadd --system --gid 10001 crmsync \
    && useradd --system --uid 10001 --gid crmsync --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin crmsync
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
EXPOSE 8085
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8085), timeout=2).close()"]
CMD ["crmsync-emulator", "--host", "0.0.0.0", "--port", "8085"]
