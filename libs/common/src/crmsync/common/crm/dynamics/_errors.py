"""Dataverse's error answers (`{"error": {"code", "message"}}`), classified onto the interface's errors."""

from __future__ import annotations

import re

import httpx
import orjson

from crmsync.common.crm.interface import ChangeCursorExpired, CrmAuthError, CrmRejected, CrmTransientError

# Dataverse error codes the connector acts on.
EXPIRED_VERSION_STAMP = "0x80044352"  # a change-tracking delta token too old to follow
THROTTLE_CODES = frozenset(
    {
        "0x80072322",  # number of requests in the window
        "0x80072321",  # combined execution time in the window
        "0x80072326",  # concurrent requests
    }
)
# The interface's neutral code for a record refused for a passing reason in a batch write.
TRANSIENT_WRITE_CODE = "SERVER_UNAVAILABLE"

_PROPERTY = re.compile(r"property named '([^']+)'|'([A-Za-z_]\w*)' attribute", re.IGNORECASE)


class ChangeTokenExpired(ChangeCursorExpired):
    """The change cursor is too old for Dataverse to follow: read everything again (a full sync).

    Deletions in the meantime are then whatever the full read no longer returns (R16).
    """


def dataverse_error(body: bytes, status: int) -> tuple[str | None, str]:
    """Returns (code, message) of a Dataverse error body, or (None, a summary) when it is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, f"HTTP {status}"
    code = error.get("code")
    return (str(code) if code else None), str(error.get("message") or f"HTTP {status}")


def fields_named(message: str) -> tuple[str, ...]:
    """Returns the attribute names a Dataverse message names (for CrmRejected.fields)."""
    return tuple(next(g for g in m.groups() if g) for m in _PROPERTY.finditer(message))


def is_transient_status(status: int, code: str | None) -> bool:
    """Returns whether an answer means "try again later": throttled, unavailable, a server fault."""
    return status == 429 or status >= 500 or code in THROTTLE_CODES


def retry_after(headers: httpx.Headers | dict[str, str]) -> float | None:
    """Returns the wait a Retry-After header asks for, in seconds."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def raise_for(response: httpx.Response) -> None:
    """Raises the CrmError an unsuccessful answer stands for; returns on a success."""
    status = response.status_code
    if status < 300 or status == 304:
        return
    code, message = dataverse_error(response.content, status)
    if is_transient_status(status, code):
        error = CrmTransientError(message, error_code=code, status=status)
        error.retry_after = retry_after(response.headers)
        # Refused before any work (throttled, unavailable) is safe to repeat; a 500 may have acted.
        error.maybe_applied = status >= 500 and status != 503
        raise error
    if status == 401:
        raise CrmAuthError(message, error_code=code or "401", status=status)
    if code == EXPIRED_VERSION_STAMP:
        raise ChangeTokenExpired(message, error_code=code, status=status)
    raise CrmRejected(message, error_code=code, status=status, fields=fields_named(message))
