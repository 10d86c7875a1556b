"""Instants as the emulator keeps them (epoch milliseconds) and as Salesforce writes them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from crmsync.emulator import soql

_DAYS: dict[int, str] = {}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_datetime(ms: int) -> str:
    """Returns Salesforce's REST date-time form: 2026-11-28T10:00:00.000+0000."""
    seconds, millis = divmod(ms, 1000)
    days, seconds = divmod(seconds, 86_400)
    date = _DAYS.get(days)
    if date is None:
        date = _DAYS[days] = datetime.fromtimestamp(days * 86_400, UTC).strftime("%Y-%m-%d")
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+0000"


def parse_datetime(value: str) -> int:
    """Returns epoch ms of an ISO 8601 date-time as Salesforce accepts it."""
    return soql.parse_datetime(value.strip())


def day(ms: int) -> str:
    """Returns the YYYY-MM-DD (UTC) of an epoch-ms instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
