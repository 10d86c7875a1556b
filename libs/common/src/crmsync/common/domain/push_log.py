"""The push log's values (pure): an event's entry as first written, the CRM's answer
recorded on it, and an entry as read back.

Every event the pusher handles gets one entry, keyed by (account, event id):
`pending` while its CRM write is in flight, then final; `waiting` while its
values wait in the store for re-delivery after a transient failure or an
exhausted API budget (R24), then final. A redelivered event whose entry is
final or waiting has no second effect (R18).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
WAITING = "waiting"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, SKIPPED})


@dataclass(frozen=True)
class PushLogEntry:
    """An event's entry as first written; each field is a column of the push log."""

    account_id: str
    event_id: str
    source: str
    operation: str  # create | update | none | outbound
    status: str  # pending | waiting | succeeded | failed | skipped
    contact_id: uuid.UUID | None = None
    crm_object: str | None = None
    crm_id: str | None = None
    sent_fields: Mapping[str, Any] = field(default_factory=dict)
    # Why each changed field was or was not sent; an outbound run's counts.
    decisions: Mapping[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    occurred_at: datetime | None = None
    updated_at: datetime | None = None  # None: the time it is stored


@dataclass(frozen=True)
class PushResult:
    """The CRM's answer for one event, recorded on its pending entry."""

    account_id: str
    event_id: str
    status: str  # waiting | succeeded | failed | skipped
    crm_id: str | None
    attempts: int  # added to the entry's
    at: datetime
    error_code: str | None = None
    error_message: str | None = None
    # Reasons joined to the entry's decisions (a field dropped before a re-send, R13).
    decisions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedEntry:
    """An entry as stored: what a redelivered event finds."""

    id: int
    account_id: str
    event_id: str
    operation: str
    status: str
    contact_id: uuid.UUID | None
    crm_object: str | None
    crm_id: str | None
    sent_fields: Mapping[str, Any]
    created_at: datetime

    @property
    def pending(self) -> bool:
        return self.status == PENDING
