"""Contacts: list, search, read with per-field origin, and user edits as events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from crmsync.common.clock import utc_now
from crmsync.common.kafka.topics import CONTACT_CHANGES
from crmsync.mapping_api.entrypoints.deps import AdminAccount, CurrentAccount, SettingsDep, TransactionsDep
from crmsync.mapping_api.handlers import contacts as handlers
from crmsync.mapping_api.schemas import (
    ContactEditAccepted,
    ContactEditIn,
    ContactOut,
    ContactPage,
    ContactSummary,
    Text,
)
from crmsync.mapping_api.values import ContactInfo, Page

router = APIRouter(prefix="/contacts", tags=["contacts"])

Search = Annotated[
    Text | None,
    Query(min_length=1, max_length=200, description="Matches name, e-mail or company.", examples=["ada"]),
]
Cursor = Annotated[
    Text | None,
    Query(
        max_length=200,
        description="next_cursor of the previous page.",
        examples=["7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.", examples=[50])]
ContactId = Annotated[uuid.UUID, Path(examples=["7d0e5c1a-3b1f-4c55-9a0e-2f4b8f1d2c3e"])]


def summary(contact: ContactInfo) -> ContactSummary:
    f = contact.fields or {}
    return ContactSummary(
        id=contact.id,
        type=contact.crm_object,  # type: ignore[arg-type]
        external_id=contact.external_id,
        email=contact.email,
        first_name=_text(f.get("first_name")),
        last_name=_text(f.get("last_name")),
        company=_text(f.get("company")),
        updated_at=contact.updated_at,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def detail(found: handlers.ContactDetail) -> ContactOut:
    contact, owner = found.contact, found.owner
    return ContactOut(
        **summary(contact).model_dump(),
        fields={name: vars(value) for name, value in found.fields.items()},
        owner_name=owner.name if owner else None,
        owner_email=owner.email if owner else None,
        crm_modstamp=contact.crm_modstamp,
        created_at=contact.created_at,
    )


def page_out(page: Page[ContactInfo]) -> ContactPage:
    return ContactPage(items=[summary(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("", response_model=ContactPage, summary="All Contacts, searchable, with cursor paging")
async def list_contacts(
    caller: CurrentAccount, tx: TransactionsDep, q: Search = None, cursor: Cursor = None, limit: Limit = 50
) -> ContactPage:
    return page_out(
        await handlers.list_contacts(tx, account_id=caller.account_id, q=q, cursor=cursor, limit=limit)
    )


@router.get(
    "/{contact_id}", response_model=ContactOut, summary="One contact, each field with origin and time"
)
async def read_contact(contact_id: ContactId, caller: CurrentAccount, tx: TransactionsDep) -> ContactOut:
    return detail(await handlers.get_contact(tx, account_id=caller.account_id, contact_id=contact_id))


@router.patch(
    "/{contact_id}",
    response_model=ContactEditAccepted,
    status_code=202,
    summary="Edit a contact (published as a user_edit contact-change event)",
    description=(
        "The edit is not written directly: it becomes a contact-change event with source user_edit, "
        "so it takes the same road (and the same push rules) as every other change."
    ),
)
async def edit_contact(
    contact_id: ContactId,
    body: ContactEditIn,
    caller: AdminAccount,
    tx: TransactionsDep,
    settings: SettingsDep,
) -> ContactEditAccepted:
    event = await handlers.edit_contact(
        tx, account_id=caller.account_id, contact_id=contact_id, changes=dict(body.changes), now=utc_now()
    )
    return ContactEditAccepted(
        event_id=event.event_id, contact_id=contact_id, topic=settings.topic(CONTACT_CHANGES)
    )
