"""Contacts, user edits and segments."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from crmsync.mapping_api.schemas.common import Body, FieldName, FieldValue, example

_SUMMARY_EXAMPLE = {
    "id": "7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
    "type": "Lead",
    "external_id": "00Q000000000001AAA",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines",
    "updated_at": "2026-11-28T10:00:00Z",
}


class FieldValueOut(BaseModel):
    value: Any = Field(examples=["Ada"])
    origin: str | None = Field(description="'crm', or the event source that set it (form, user_edit…).")
    at: datetime | None = Field(
        description="When it was set (the CRM record's modified time, or the event time)."
    )

    model_config = example(value="Ada", origin="crm", at="2026-11-20T10:00:00Z")


class ContactSummary(BaseModel):
    id: UUID
    type: Literal["Lead", "Contact"] | None = Field(description="null for a contact that is not in the CRM.")
    external_id: str | None = Field(examples=["00Q000000000001AAA"])
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    updated_at: datetime

    model_config = example(**_SUMMARY_EXAMPLE)


class ContactOut(ContactSummary):
    fields: dict[str, FieldValueOut]
    owner_name: str | None
    owner_email: str | None
    crm_modstamp: datetime | None
    created_at: datetime

    model_config = example(
        **_SUMMARY_EXAMPLE,
        fields={
            "first_name": {"value": "Ada", "origin": "crm", "at": "2026-11-20T10:00:00Z"},
            "job_title": {"value": "Analyst", "origin": "user_edit", "at": "2026-11-28T09:00:00Z"},
        },
        owner_name="Sam Sales",
        owner_email="sam@example.com",
        crm_modstamp="2026-11-20T10:00:00Z",
        created_at="2026-11-20T10:05:00Z",
    )


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class ContactEditIn(Body):
    changes: dict[FieldName, FieldValue] = Field(
        min_length=1, max_length=100, description="Field -> new value, for fields of the mapping."
    )

    model_config = example(changes={"first_name": "Ada", "job_title": "Analyst"})


class ContactEditAccepted(BaseModel):
    event_id: str
    contact_id: UUID
    topic: str = Field(examples=["crmsync.contact-changes"])

    model_config = example(
        event_id="9eeacc14-8d6b-4793-9a77-e7e84999c472",
        contact_id="7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e",
        topic="crmsync.contact-changes",
    )


class SegmentOut(BaseModel):
    id: Literal["all-contacts", "crm-leads", "crm-contacts"]
    name: str = Field(examples=["All Salesforce Leads", "All Dynamics 365 Contacts"])
    count: int

    model_config = example(id="crm-leads", name="All Salesforce Leads", count=2000)
