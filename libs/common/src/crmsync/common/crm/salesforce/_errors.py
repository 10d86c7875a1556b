"""Salesforce's error answers, classified: transient, budget, auth, or a refusal."""

from __future__ import annotations

import httpx
import orjson

from crmsync.common.crm.interface import (
    TRANSIENT_ERROR_CODES,
    ChangeCursorExpired,
    CrmAuthError,
    CrmBudgetExhausted,
    CrmRejected,
    CrmTransientError,
)
from crmsync.common.crm.salesforce._limits import ApiUsage
from crmsync.common.crm.tls import untrusted_certificate

__all__ = ["DeletedFeedWindowExceeded", "raise_for", "untrusted_certificate"]


class DeletedFeedWindowExceeded(ChangeCursorExpired):
    """The deleted-records feed does not reach back to the requested start.

    Salesforce keeps deletions for 15 days; deletions older than that can only be
    found by a full sync (whatever a full export no longer returns was deleted).
    """


def raise_for(response: httpx.Response, *, usage: ApiUsage) -> None:
    """Raises the CrmError an unsuccessful answer stands for; returns on a success."""
    status = response.status_code
    if status < 300:
        return
    code, message, fields = _first_error(response)
    # A 403 REQUEST_LIMIT_EXCEEDED names its limit: "TotalRequests" is the day's
    # allowance, gone; "ConcurrentPerOrgLongTxn" is too many long calls at once,
    # which clears as they finish.
    concurrent = code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower()
    if status == 429 or status >= 500 or code in TRANSIENT_ERROR_CODES or concurrent:
        error = CrmTransientError(message, error_code=code, status=status)
        error.retry_after = _retry_after(response)
        # Refusals before any work (rate limit, unavailable, a lock) are safe to repeat.
        error.maybe_applied = status >= 500 and status != 503
        raise error
    if code == "REQUEST_LIMIT_EXCEEDED":
        # 403: the org's daily allowance is gone (a 429 with this code is a rate limit, above).
        raise CrmBudgetExhausted(
            f"Salesforce refused the call: {message}", used=usage.used or 0, limit=usage.limit or 0
        )
    if code == "INVALID_REPLICATION_DATE":
        raise DeletedFeedWindowExceeded(message, error_code=code, status=status, fields=fields)
    if status == 401:
        raise CrmAuthError(message, error_code=code or "INVALID_SESSION_ID", status=status)
    raise CrmRejected(message, error_code=code, status=status, fields=fields)


def _first_error(response: httpx.Response) -> tuple[str | None, str, tuple[str, ...]]:
    """Returns (errorCode, message, fields) of a Salesforce error body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None, f"HTTP {response.status_code}: {response.text[:300]}", ()
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]
    elif isinstance(body, dict):
        first = body
    else:
        return None, f"HTTP {response.status_code}", ()
    code = first.get("errorCode") or first.get("error")
    message = first.get("message") or first.get("error_description") or f"HTTP {response.status_code}"
    return code, str(message), tuple(first.get("fields") or ())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None
