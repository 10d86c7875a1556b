"""Contacts, segments (R19), and user edits as contact-change events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.common.crm.providers import DEFAULT_PROVIDER, CrmProvider, provider_named
from crmsync.common.domain.contacts import stored_field_meta
from crmsync.common.domain.fields import RELATED_OBJECT_FIELDS, DataType
from crmsync.common.domain.mapping import CrmObject
from crmsync.common.messages import ContactChanged, ContactRef, EventSource
from crmsync.mapping_api.handlers.errors import Invalid, NotFound
from crmsync.mapping_api.handlers.mapping import saved_mapping
from crmsync.mapping_api.handlers.ports import Stores, Transactions
from crmsync.mapping_api.values import ContactInfo, ContactQuery, OwnerInfo, Page

ALL_CONTACTS = "all-contacts"
# Segment id -> the contacts' kind, None for all of them (R19). The ids are the same whichever
# CRM the account connects; the names carry the CRM's label ("All Dynamics 365 Leads").
SEGMENTS: dict[str, CrmObject | None] = {
    ALL_CONTACTS: None,
    "crm-leads": CrmObject.LEAD,
    "crm-contacts": CrmObject.CONTACT,
}
# The ids of the days of one CRM, still accepted for the segments they named.
FORMER_IDS = {"salesforce-leads": "crm-leads", "salesforce-contacts": "crm-contacts"}


def segment_id(segment: str) -> str:
    """Returns the segment's id (a former id gives its segment's); NotFound for no segment."""
    segment = FORMER_IDS.get(segment, segment)
    if segment not in SEGMENTS:
        raise NotFound(f"segment {segment!r} does not exist", field="segment")
    return segment


def segment_name(segment: str, provider: CrmProvider) -> str:
    """Returns the segment's name: All Contacts, or All <CRM> Leads / Contacts (R19)."""
    kind = SEGMENTS[segment]
    return "All Contacts" if kind is None else f"All {provider.label} {kind.value}s"


@dataclass(frozen=True)
class FieldValue:
    """A contact's value of one field, where it came from (crm, or the event source) and when."""

    value: Any
    origin: str | None
    at: datetime | None


@dataclass(frozen=True)
class ContactDetail:
    contact: ContactInfo
    owner: OwnerInfo | None
    fields: dict[str, FieldValue]


def _uuid_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        return uuid.UUID(cursor)
    except ValueError as exc:
        raise Invalid("not a cursor returned by this listing", field="cursor") from exc


async def list_contacts(
    tx: Transactions,
    *,
    account_id: str,
    segment: str = ALL_CONTACTS,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ContactInfo]:
    """Returns a page of the segment's contacts matching `q` (name, email, company), by id."""
    kind = SEGMENTS[segment_id(segment)]
    after = _uuid_cursor(cursor)
    async with tx.read() as stores:
        query = ContactQuery(crm_object=kind, search=q or None, after=after, limit=limit + 1)
        rows = await stores.contacts.page(account_id, query)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more else None)


async def segment_counts(tx: Transactions, *, account_id: str) -> list[tuple[str, str, int]]:
    """Returns (id, name, count) of each segment (R19), named after the account's CRM."""
    async with tx.read() as stores:
        by_object = await stores.contacts.count_by_object(account_id)
        connection = await stores.connections.get(account_id)
    provider = provider_named(connection.provider if connection is not None else DEFAULT_PROVIDER)
    total = sum(by_object.values())
    return [
        (segment, segment_name(segment, provider), total if kind is None else by_object.get(kind, 0))
        for segment, kind in SEGMENTS.items()
    ]


async def _contact(stores: Stores, account_id: str, contact_id: uuid.UUID) -> ContactInfo:
    contact = await stores.contacts.get(account_id, contact_id)
    if contact is None:
        raise NotFound("contact not found", field="contact_id")
    return contact


def field_values(contact: ContactInfo) -> dict[str, FieldValue]:
    """Returns each stored field with its origin and time (R12, R13)."""
    values = {}
    fields = dict(contact.fields or {})
    for name, value in fields.items():
        try:
            meta = stored_field_meta(name, fields, dict(contact.field_meta or {}), contact.crm_modstamp)
        except (KeyError, TypeError, ValueError):
            meta = None  # an entry this version cannot read: shown without origin rather than failing
        values[name] = FieldValue(value, meta.origin if meta else None, meta.at if meta else None)
    return values


async def get_contact(tx: Transactions, *, account_id: str, contact_id: uuid.UUID) -> ContactDetail:
    """Returns the contact, its CRM owner and fields; NotFound outside the caller's account (R21)."""
    async with tx.read() as stores:
        contact = await _contact(stores, account_id, contact_id)
        owner = None
        if contact.owner_external_id:
            owner = await stores.contacts.owner(account_id, contact.owner_external_id)
    return ContactDetail(contact, owner, field_values(contact))


def _check_value(name: str, data_type: DataType, value: Any) -> None:
    def bad(expected: str) -> Invalid:
        return Invalid(f"{name} takes {expected}", field=f"changes.{name}")

    if value is None:
        return
    if data_type == DataType.BOOLEAN and not isinstance(value, bool):
        raise bad("true or false")
    if data_type in (DataType.NUMBER, DataType.SCORE) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise bad("a number")
    if data_type == DataType.MULTI_TEXT and not isinstance(value, list):
        raise bad("a list of strings")
    if data_type in (DataType.TEXT, DataType.EMAIL, DataType.DATE, DataType.DATETIME) and not isinstance(
        value, str
    ):
        raise bad("a string")
    if data_type == DataType.EMAIL:
        try:
            ContactRef(email=value)
        except ValueError as exc:
            raise bad("an e-mail address") from exc
    if data_type == DataType.DATE:
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError as exc:
            raise bad("a date (YYYY-MM-DD)") from exc
    if data_type == DataType.DATETIME:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise bad("an ISO 8601 date and time with offset") from exc
        if parsed.tzinfo is None:
            raise bad("an ISO 8601 date and time with offset")


async def edit_contact(
    tx: Transactions, *, account_id: str, contact_id: uuid.UUID, changes: dict[str, Any], now: datetime
) -> ContactChanged:
    """Returns the user_edit event enqueued for the contact; the pusher and store take it from there.

    A user edit takes the same road as every other change, so Allow Push, echo
    suppression and conflict rules apply to it too (R8, R12, R13).
    """
    async with tx.begin() as stores:
        contact = await _contact(stores, account_id, contact_id)
        mapping = await saved_mapping(stores, account_id)
        types = {row.destination: row.data_type for row in mapping.rows}
        for name, value in changes.items():
            if name in RELATED_OBJECT_FIELDS:
                raise Invalid(
                    f"{name} comes from the CRM record's owner and cannot be edited", field=f"changes.{name}"
                )
            if name not in types:
                raise Invalid(f"{name!r} is not a field of the mapping", field=f"changes.{name}")
            _check_value(name, types[name], value)
        event = ContactChanged(
            event_id=str(uuid.uuid4()),
            account_id=account_id,
            occurred_at=now,
            source=EventSource.USER_EDIT,
            contact=ContactRef(id=contact.id),
            changes=changes,
        )
        stores.outbox.contact_change(event)
    return event
