"""Contacts, segments (R19), user edits as contact-change events, sync runs and the push log."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import Contact, CrmOwner, PushLog, SyncRun
from crmsync.common.domain.fields import RELATED_OBJECT_FIELDS, DataType
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import CONTACT_CHANGES
from crmsync.common.messages import ContactChanged, ContactRef, EventSource, contact_change_key
from crmsync.mapping_api.handlers.errors import Invalid, NotFound
from crmsync.mapping_api.handlers.mapping import load_mapping

# Segment id -> (name, the contacts' crm_object or None for all of them) (R19).
SEGMENTS: dict[str, tuple[str, str | None]] = {
    "all-contacts": ("All Contacts", None),
    "salesforce-leads": ("All Salesforce Leads", "Lead"),
    "salesforce-contacts": ("All Salesforce Contacts", "Contact"),
}


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _uuid_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        return uuid.UUID(cursor)
    except ValueError as exc:
        raise Invalid("not a cursor returned by this listing", field="cursor") from exc


async def list_contacts(
    session: AsyncSession,
    *,
    account_id: str,
    segment: str = "all-contacts",
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Returns a page of the segment's contacts matching `q` (name, email, company), by id."""
    if segment not in SEGMENTS:
        raise NotFound(f"segment {segment!r} does not exist", field="segment")
    query = select(Contact).where(Contact.account_id == account_id)
    crm_object = SEGMENTS[segment][1]
    if crm_object is not None:
        query = query.where(Contact.crm_object == crm_object)
    if q:
        # search_text is lower-cased and has a trigram index, so a substring match stays fast.
        query = query.where(Contact.search_text.like(_like(q), escape="\\"))
    after = _uuid_cursor(cursor)
    if after is not None:
        query = query.where(Contact.id > after)
    rows = list(await session.scalars(query.order_by(Contact.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more else None)


async def segment_counts(session: AsyncSession, *, account_id: str) -> list[tuple[str, str, int]]:
    """Returns (id, name, count) of each segment (R19)."""
    result = await session.execute(
        select(Contact.crm_object, func.count())
        .where(Contact.account_id == account_id)
        .group_by(Contact.crm_object)
    )
    by_object = {crm_object: count for crm_object, count in result.all()}
    total = sum(by_object.values())
    return [
        (segment_id, name, total if crm_object is None else by_object.get(crm_object, 0))
        for segment_id, (name, crm_object) in SEGMENTS.items()
    ]


async def get_contact(
    session: AsyncSession, *, account_id: str, contact_id: uuid.UUID
) -> tuple[Contact, CrmOwner | None]:
    """Returns the contact and its CRM owner; NotFound outside the caller's account (R21)."""
    contact = await session.scalar(
        select(Contact).where(Contact.account_id == account_id, Contact.id == contact_id)
    )
    if contact is None:
        raise NotFound("contact not found", field="contact_id")
    owner = None
    if contact.owner_external_id:
        owner = await session.get(CrmOwner, (account_id, contact.owner_external_id))
    return contact, owner


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
    session: AsyncSession, *, account_id: str, contact_id: uuid.UUID, changes: dict[str, Any], now: datetime
) -> ContactChanged:
    """Returns the user_edit event enqueued for the contact; the pusher and store take it from there.

    A user edit takes the same road as every other change, so Allow Push, echo
    suppression and conflict rules apply to it too (R8, R12, R13).
    """
    contact, _ = await get_contact(session, account_id=account_id, contact_id=contact_id)
    mapping = await load_mapping(session, account_id=account_id)
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
    enqueue(
        session,
        account_id=account_id,
        topic=CONTACT_CHANGES,
        key=contact_change_key(event).decode(),
        message=event,
    )
    await session.flush()
    return event


# --- sync runs and push log ---------------------------------------------------------


def _encode_cursor(at: datetime, ident: object) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(ident)
    except ValueError as exc:
        raise Invalid("not a cursor returned by this listing", field="cursor") from exc


async def list_sync_runs(
    session: AsyncSession,
    *,
    account_id: str,
    kind: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Returns sync runs, newest first."""
    query: Select[tuple[SyncRun]] = select(SyncRun).where(SyncRun.account_id == account_id)
    if kind:
        query = query.where(SyncRun.kind == kind)
    if status:
        query = query.where(SyncRun.status == status)
    if cursor:
        at, ident = _decode_cursor(cursor)
        query = query.where(or_(SyncRun.created_at < at, and_(SyncRun.created_at == at, SyncRun.id < ident)))
    rows = list(
        await session.scalars(query.order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


async def get_sync_run(session: AsyncSession, *, account_id: str, run_id: uuid.UUID) -> SyncRun:
    """Returns one sync run of the caller's account."""
    run = await session.scalar(select(SyncRun).where(SyncRun.account_id == account_id, SyncRun.id == run_id))
    if run is None:
        raise NotFound("sync run not found", field="run_id")
    return run


async def list_push_log(
    session: AsyncSession,
    *,
    account_id: str,
    contact_id: uuid.UUID | None = None,
    status: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> Page:
    """Returns push log entries, newest first."""
    query = select(PushLog).where(PushLog.account_id == account_id)
    if contact_id is not None:
        query = query.where(PushLog.contact_id == contact_id)
    if status:
        query = query.where(PushLog.status == status)
    if cursor is not None:
        query = query.where(PushLog.id < cursor)
    rows = list(await session.scalars(query.order_by(PushLog.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more else None)


async def get_push_log_entry(session: AsyncSession, *, account_id: str, entry_id: int) -> PushLog:
    """Returns one push log entry of the caller's account."""
    entry = await session.scalar(
        select(PushLog).where(PushLog.account_id == account_id, PushLog.id == entry_id)
    )
    if entry is None:
        raise NotFound("push log entry not found", field="entry_id")
    return entry
