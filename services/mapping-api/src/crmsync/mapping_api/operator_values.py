"""What an operator sees of waiting and failed pushes and of dead letters (R24), as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Counts by state (or push log status), then by error code (None: no error).
Counts = Mapping[str, Mapping[str | None, int]]


@dataclass(frozen=True)
class DeadLetterInfo:
    """A dead-lettered event of the account, as its push log entry records it (R22)."""

    id: int
    event_id: str
    source: str | None
    reason: str | None
    occurred_at: datetime | None
    logged_at: datetime


@dataclass(frozen=True)
class PushSummary:
    """The account's pushes in `push_deliveries` and its push log entries, counted by error code."""

    deliveries: Counts
    push_log: Counts


@dataclass(frozen=True)
class Replayed:
    """What a replay sent back through the contact-change topic, and what the dead-letter topic no longer held."""

    event_ids: tuple[str, ...]
    not_on_topic: tuple[str, ...] = field(default=())
