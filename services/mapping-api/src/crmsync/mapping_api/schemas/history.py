"""Sync runs and the push log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from crmsync.mapping_api.schemas.common import example


class SyncRunOut(BaseModel):
    id: UUID
    job_id: str
    kind: str = Field(examples=["incremental"])
    reason: str = Field(examples=["schedule"])
    status: str = Field(examples=["succeeded"])
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
    duration_s: float | None

    model_config = example(
        id="0b8f6f2e-8a43-4a55-8f7c-4b0e6f1d2a3b",
        job_id="acme:incremental:2026-11-28T10:00:00Z",
        kind="incremental",
        reason="schedule",
        status="succeeded",
        attempts=1,
        pulled=42,
        created=3,
        updated=39,
        deleted=1,
        skipped=0,
        errors=0,
        error=None,
        requested_at="2026-11-28T10:00:00Z",
        started_at="2026-11-28T10:00:01Z",
        finished_at="2026-11-28T10:00:07Z",
        duration_s=6.0,
    )


class SyncRunPage(BaseModel):
    items: list[SyncRunOut]
    next_cursor: str | None


class PushLogOut(BaseModel):
    id: int
    event_id: str
    source: str | None
    contact_id: UUID | None
    crm_object: str | None
    crm_id: str | None
    operation: str
    status: str
    sent_fields: dict[str, Any]
    decisions: dict[str, Any]
    error_code: str | None
    error_message: str | None
    attempts: int
    occurred_at: datetime | None
    created_at: datetime
    updated_at: datetime

    model_config = example(
        id=1017,
        event_id="6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11",
        source="form",
        contact_id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        crm_object="Lead",
        crm_id="00Q000000000001AAA",
        operation="update",
        status="succeeded",
        sent_fields={"Title": "Analyst"},
        decisions={"title": "sent", "company": "allow push off (R8)"},
        error_code=None,
        error_message=None,
        attempts=1,
        occurred_at="2026-11-28T10:00:00Z",
        created_at="2026-11-28T10:00:01Z",
        updated_at="2026-11-28T10:00:02Z",
    )


class PushLogPage(BaseModel):
    items: list[PushLogOut]
    next_cursor: str | None
