"""JSON encoding of messages with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    """Returns the UTF-8 JSON bytes of a message."""
    if isinstance(message, BaseModel):
        return orjson.dumps(message.model_dump(mode="json"))
    return orjson.dumps(message)


def decode(raw: bytes | None) -> Any:
    """Returns the parsed JSON; raises ValueError on anything that is not JSON."""
    if raw is None:
        raise ValueError("message has no value")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid UTF-8 JSON: {exc}") from exc
