"""Structured JSON logs, configured once by each entry point."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson
import structlog

_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authorization|api_key|private_key|credential)", re.I
)
# Credentials inside values: user:password@ in URLs, bearer tokens, PEM keys.
_SECRET_VALUES = (
    (
        re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I),
        r"\g<scheme>\g<user>:[redacted]@",
    ),
    (re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=!-]+", re.I), r"\1[redacted]"),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        "[redacted key]",
    ),
)


def redact(value: str) -> str:
    """Returns the text with credentials in URLs, bearer tokens and private keys masked."""
    for pattern, replacement in _SECRET_VALUES:
        value = pattern.sub(replacement, value)
    return value


def _redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Never let a credential reach a log line, whoever logged it."""
    for key, value in list(event.items()):
        if value is None:
            continue
        if _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = redact(value)
    return event


class _Stdout:
    """Whatever sys.stdout is at write time (it is swapped under test runners)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure_logging(*, service: str, level: str = "INFO", json: bool = True) -> None:
    """Configures structlog and the standard library to emit one JSON object per line."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _redact_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _redact_secrets, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    )
    handler = logging.StreamHandler(_Stdout())  # type: ignore[arg-type]
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
