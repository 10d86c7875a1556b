"""Message models. Events are past tense (ContactChanged), jobs imperative (RunSync)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from crmsync.common.domain.values import looks_like_email

AccountId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"), Field(examples=["acme"])]


def _looks_like_email(value: str) -> str:
    if not looks_like_email(value):
        raise ValueError("not an e-mail address")
    return value


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=320), AfterValidator(_looks_like_email)
]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyncKind(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class SyncReason(StrEnum):
    SCHEDULE = "schedule"
    BIWEEKLY = "biweekly"
    NEW_FIELD = "new_field"
    SYNC_NOW = "sync_now"
    FIRST_SYNC = "first_sync"


class RunSync(Message):
    """crmsync.sync-jobs: pull the CRM into the contact store. Key: account id."""

    job_id: str = Field(min_length=1, max_length=200, examples=["acme:incremental:2026-11-28T10:00"])
    account_id: AccountId
    kind: SyncKind
    reason: SyncReason
    requested_at: AwareDatetime


class RunOutbound(Message):
    """crmsync.outbound-jobs: send scores and opt-outs changed since the last run. Key: account id."""

    job_id: str = Field(min_length=1, max_length=200)
    account_id: AccountId
    kind: Literal["scores_optouts"] = "scores_optouts"
    requested_at: AwareDatetime


class EventSource(StrEnum):
    FORM = "form"
    PROGRAM = "program"
    USER_EDIT = "user_edit"
    LIST_MAINTENANCE = "list_maintenance"
    SCORING = "scoring"


class ContactRef(Message):
    """Which contact an event is about: exactly one of email, id or external_id."""

    email: Email | None = None
    id: UUID | None = None
    external_id: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> ContactRef:
        given = [name for name in ("email", "id", "external_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("contact must name exactly one of email, id or external_id")
        return self


class CrmCreate(Message):
    """Present only from a form's Push to CRM or a program's Create in CRM step (R9)."""

    object: Literal["Lead", "Contact"]


FieldValue = str | int | float | bool | list[str] | None


class ContactChanged(Message):
    """crmsync.contact-changes: a contact changed in the marketing platform.

    Key: `account_id:lower(email)` or `account_id:contact id`, so one contact's
    events stay in order.
    """

    event_id: str = Field(min_length=1, max_length=200, examples=["6f1c2b7e-1c1d-4c39-9d43-0e5d0f3c9a11"])
    account_id: AccountId
    occurred_at: AwareDatetime
    source: EventSource
    contact: ContactRef
    changes: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], FieldValue] = Field(
        examples=[{"first_name": "Ada", "score": 42, "opted_out": True}]
    )
    crm_create: CrmCreate | None = None

    @model_validator(mode="after")
    def _has_something_to_do(self) -> ContactChanged:
        if not self.changes and self.crm_create is None:
            raise ValueError("changes must not be empty unless crm_create is given")
        return self


def contact_change_key(event: ContactChanged) -> bytes:
    """Returns the partition key of a contact-change event."""
    ref = event.contact
    who = ref.email.lower() if ref.email else str(ref.id) if ref.id else f"ext:{ref.external_id}"
    return f"{event.account_id}:{who}".encode()


class DeadLetter(Message):
    """crmsync.contact-changes.dlq (and any *.dlq): the original bytes plus why it failed."""

    original: str = Field(description="The original value, as UTF-8 text when it was, else base64.")
    original_encoding: Literal["utf-8", "base64"]
    error: str
    failed_at: datetime
    attempts: int = Field(ge=1)
    topic: str
    partition: int
    offset: int
    headers: dict[str, Any] = Field(default_factory=dict)
