"""Waiting and failed pushes, their counts, retries, dead letters and replays (R24)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from crmsync.mapping_api.schemas.common import Body, example


class PushValueOut(BaseModel):
    value: Any
    occurred_at: datetime
    event_id: str
    field: str | None = Field(description="The destination field, when the value came from one.")


class PushOut(BaseModel):
    id: int
    state: str = Field(
        examples=["failed"], description="waiting: sent again by re-delivery; failed: given up."
    )
    contact_id: UUID | None
    operation: str = Field(examples=["update"])
    crm_object: str
    crm_id: str | None
    values: dict[str, PushValueOut] = Field(description="What the push carries, by CRM field.")
    event_ids: list[str]
    failures: int
    first_failed_at: datetime | None
    next_attempt_at: datetime
    last_error_code: str | None
    last_error_message: str | None
    created_at: datetime | None

    model_config = example(
        id=42,
        state="failed",
        contact_id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        operation="update",
        crm_object="Lead",
        crm_id="00Q000000000001AAA",
        values={
            "Title": {
                "value": "Analyst",
                "occurred_at": "2026-11-28T10:00:00Z",
                "event_id": "6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11",
                "field": "job_title",
            }
        },
        event_ids=["6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11"],
        failures=14,
        first_failed_at="2026-11-28T10:00:01Z",
        next_attempt_at="2026-11-29T10:00:01Z",
        last_error_code="SERVER_UNAVAILABLE",
        last_error_message="503 Service Unavailable",
        created_at="2026-11-28T10:00:01Z",
    )


class PushPage(BaseModel):
    items: list[PushOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class PushSummaryOut(BaseModel):
    pushes: dict[str, dict[str, int]] = Field(
        description="Pushes in re-delivery by state (waiting, failed), then by last error code ('' for none)."
    )
    push_log: dict[str, dict[str, int]] = Field(
        description="Push log entries by status, then by error code ('' for none)."
    )

    model_config = example(
        pushes={"waiting": {"UNABLE_TO_LOCK_ROW": 3}, "failed": {"SERVER_UNAVAILABLE": 2}},
        push_log={
            "succeeded": {"": 1200},
            "waiting": {"UNABLE_TO_LOCK_ROW": 3},
            "skipped": {"INVALID_EVENT": 1},
        },
    )


class RetryIn(Body):
    error_code: str | None = Field(
        None, max_length=200, description="Only the failed pushes whose last error has this code."
    )

    model_config = example(error_code="SERVER_UNAVAILABLE")


class RetriedOut(BaseModel):
    retried: int = Field(description="Failed pushes put back in line; the pusher's re-delivery sends them.")

    model_config = example(retried=2)


class DeadLetterOut(BaseModel):
    id: int
    event_id: str
    source: str | None
    reason: str | None = Field(description="Why the event was refused, naming the field (R22).")
    occurred_at: datetime | None
    logged_at: datetime

    model_config = example(
        id=1017,
        event_id="6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11",
        source="form",
        reason="changes.Shoe_Size: unknown field (neither a standard field nor in the mapping)",
        occurred_at="2026-11-28T10:00:00Z",
        logged_at="2026-11-28T10:00:01Z",
    )


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class ReplayedOut(BaseModel):
    replayed: list[str] = Field(description="Event ids sent through the contact-change topic again.")
    not_on_topic: list[str] = Field(
        description="Dead letters the dead-letter topic no longer holds (past its retention): not replayed."
    )

    model_config = example(replayed=["6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11"], not_on_topic=[])
