"""Frozen values that cross the mapping API's ports: what the stores return, never ORM rows.

A stored mapping is `crmsync.common.domain.account.StoredMapping` and a CRM
connection `crmsync.common.crm.connection.CrmConnectionInfo`; the rest is here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from crmsync.common.domain.schedule import Schedule

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_cursor` is None on the last one."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class ContactQuery:
    """Contacts by id after `after`, of one CRM object (all when None), whose name, e-mail or
    company contains `search`."""

    crm_object: str | None
    search: str | None
    after: uuid.UUID | None
    limit: int


@dataclass(frozen=True)
class RunQuery:
    """Sync runs created before `before` (created_at, id), newest first."""

    kind: str | None
    status: str | None
    before: tuple[datetime, uuid.UUID] | None
    limit: int


@dataclass(frozen=True)
class PushLogQuery:
    """Push log entries with ids below `before`, newest first."""

    contact_id: uuid.UUID | None
    status: str | None
    before: int | None
    limit: int


@dataclass(frozen=True)
class AccountInfo:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyInfo:
    """A stored API key: its hash and first characters, never the key."""

    id: uuid.UUID
    account_id: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class VersionSummary:
    version: int
    note: str | None
    created_at: datetime
    row_count: int


@dataclass(frozen=True)
class StoredSchedule:
    schedule: Schedule
    full_sync_requested_at: datetime | None = None


@dataclass(frozen=True)
class RunHistory:
    """An account's last runs as the scheduler reads them (see `SyncRunStore.history`)."""

    last_full_success: datetime | None = None
    last_full_pulled: int = 0
    last_incremental: datetime | None = None
    last_outbound: datetime | None = None


@dataclass(frozen=True)
class ContactInfo:
    id: uuid.UUID
    account_id: str
    crm_object: str | None
    external_id: str | None
    email: str | None
    fields: Mapping[str, Any]
    field_meta: Mapping[str, Any]
    crm_modstamp: datetime | None
    owner_external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OwnerInfo:
    name: str | None
    email: str | None


@dataclass(frozen=True)
class SyncRunInfo:
    id: uuid.UUID
    job_id: str
    kind: str
    reason: str
    status: str
    attempts: int
    pulled: int
    created: int
    updated: int
    deleted: int
    skipped: int
    errors: int
    error: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


@dataclass(frozen=True)
class PushLogEntry:
    id: int
    event_id: str
    source: str | None
    contact_id: uuid.UUID | None
    crm_object: str | None
    crm_id: str | None
    operation: str
    status: str
    sent_fields: Mapping[str, Any]
    decisions: Mapping[str, Any]
    error_code: str | None
    error_message: str | None
    attempts: int
    occurred_at: datetime | None
    created_at: datetime
    updated_at: datetime
