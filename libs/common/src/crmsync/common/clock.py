"""The one clock of every service: timezone-aware UTC, so stored and compared times agree."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Returns the current time in UTC."""
    return datetime.now(UTC)
