"""Postgres access of the pusher: account configuration, contacts, the push log.

Helpers take the caller's session and never commit: the handler owns the
transaction (one per use case).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import (
    Account,
    Contact,
    CrmConnection,
    MappingRowRecord,
    MappingVersion,
    PushLog,
)
from crmsync.common.db.schema import PushPolicy as PushPolicyRecord
from crmsync.common.domain.contacts import ContactValues, FieldMeta
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import (
    FieldKind,
    Mapping,
    MappingRow,
    PushPolicy,
    default_salesforce_mapping,
)

FINAL_STATUSES = frozenset({"succeeded", "failed", "skipped"})
_CONTACT_COLUMNS = (
    Contact.id,
    Contact.account_id,
    Contact.crm_object,
    Contact.external_id,
    Contact.email,
    Contact.fields,
    Contact.field_meta,
)


@dataclass(frozen=True)
class AccountConfig:
    """What the pusher needs to know about one account for one batch."""

    account_id: str
    mapping: Mapping
    policy: PushPolicy
    connection: CrmConnection | None


@dataclass
class StoredContact:
    """A contact row as the handler works on it; `new` ones are inserted at the end.

    Field metadata stays in its stored JSON form and is parsed only for the
    fields an event touches: a contact may have many fields, an event few.
    """

    id: uuid.UUID
    account_id: str
    crm_object: str | None
    external_id: str | None
    email: str | None
    fields: dict[str, Any]
    raw_meta: dict[str, Any]
    outbound_pending: bool = False  # a score or opt-out changed locally now: (re)set the flag
    new: bool = False
    dirty: bool = False

    @property
    def values(self) -> ContactValues:
        """Returns every value with its parsed origin and time."""
        return ContactValues.from_json(self.fields, self.raw_meta)

    def view(self, names: Iterable[str]) -> ContactValues:
        """Returns every value, with origin and time parsed for `names` only."""
        meta = self.raw_meta
        return ContactValues(self.fields, {n: FieldMeta.from_json(meta[n]) for n in names if n in meta})

    def apply(self, values: ContactValues, names: Iterable[str]) -> None:
        """Takes the values of a merge whose touched fields are `names`."""
        self.fields = dict(values.fields)
        for name in names:
            if name in values.meta:
                self.raw_meta[name] = values.meta[name].to_json()
        self.dirty = True


async def existing_accounts(session: AsyncSession, account_ids: Iterable[str]) -> set[str]:
    """Returns which of these accounts exist."""
    ids = list(set(account_ids))
    if not ids:
        return set()
    return set((await session.scalars(select(Account.id).where(Account.id.in_(ids)))).all())


async def load_config(session: AsyncSession, account_id: str) -> AccountConfig:
    """Returns the account's newest mapping (the defaults if none was saved), policy and connection."""
    version_id = await session.scalar(
        select(MappingVersion.id)
        .where(MappingVersion.account_id == account_id)
        .order_by(MappingVersion.version.desc())
        .limit(1)
    )
    if version_id is None:
        mapping = default_salesforce_mapping()
    else:
        records = (
            await session.scalars(
                select(MappingRowRecord)
                .where(
                    MappingRowRecord.account_id == account_id,
                    MappingRowRecord.mapping_version_id == version_id,
                )
                .order_by(MappingRowRecord.position)
            )
        ).all()
        mapping = Mapping(version=int(version_id), rows=tuple(_row(r) for r in records))
    default_allow = await session.scalar(
        select(PushPolicyRecord.default_allow_push).where(PushPolicyRecord.account_id == account_id)
    )
    policy = PushPolicy(default_allow_push=True if default_allow is None else bool(default_allow))
    connection = await session.get(CrmConnection, account_id)
    return AccountConfig(account_id, mapping, policy, connection)


def _row(record: MappingRowRecord) -> MappingRow:
    return MappingRow(
        destination=record.destination,
        data_type=DataType(record.data_type),
        kind=FieldKind(record.kind),
        lead_source=record.lead_source,
        contact_source=record.contact_source,
        allow_push=record.allow_push,
    )


async def find_contacts(
    session: AsyncSession,
    *,
    account_id: str,
    ids: Sequence[uuid.UUID],
    external_ids: Sequence[str],
    emails_lower: Sequence[str],
) -> list[StoredContact]:
    """Returns (and locks) the account's contacts with any of these ids, external ids or e-mails."""
    conditions = []
    if ids:
        conditions.append(Contact.id.in_(ids))
    if external_ids:
        conditions.append(Contact.external_id.in_(external_ids))
    if emails_lower:
        conditions.append(Contact.email_lower.in_(emails_lower))
    if not conditions:
        return []
    # Core rows rather than ORM objects: this runs for every batch of events.
    rows = (
        await session.execute(
            select(*_CONTACT_COLUMNS)
            .where(Contact.account_id == account_id, or_(*conditions))
            .order_by(Contact.created_at, Contact.id)
            .with_for_update()
        )
    ).all()
    return [
        StoredContact(
            id=row.id,
            account_id=row.account_id,
            crm_object=row.crm_object,
            external_id=row.external_id,
            email=row.email,
            fields=dict(row.fields),
            raw_meta=dict(row.field_meta),
        )
        for row in rows
    ]


async def save_contacts(session: AsyncSession, contacts: Iterable[StoredContact], *, now: datetime) -> None:
    """Inserts the new contacts and updates the changed ones."""
    new, changed = [], []
    for c in contacts:
        row = {
            "id": c.id,
            "account_id": c.account_id,
            "crm_object": c.crm_object,
            "external_id": c.external_id,
            "email": c.email,
            "fields": c.fields,
            "field_meta": c.raw_meta,
            "outbound_pending_at": now if c.outbound_pending else None,
            "updated_at": now,
        }
        if c.new:
            new.append(row)
        elif c.dirty:
            changed.append(row)
    if new:
        await session.execute(insert(Contact.__table__), new)
    if changed:
        await session.execute(
            update(Contact.__table__)
            .where(Contact.id == bindparam("b_id"))
            .values(
                email=bindparam("b_email"),
                fields=bindparam("b_fields"),
                field_meta=bindparam("b_meta"),
                # A new change moves the flag's time, so an outbound run that read the
                # older time does not clear it (clear_outbound compares the time).
                outbound_pending_at=func.coalesce(
                    bindparam("b_pending", type_=DateTime(timezone=True)), Contact.outbound_pending_at
                ),
                updated_at=bindparam("b_now"),
            ),
            [
                {
                    "b_id": r["id"],
                    "b_email": r["email"],
                    "b_fields": r["fields"],
                    "b_meta": r["field_meta"],
                    "b_pending": r["outbound_pending_at"],
                    "b_now": now,
                }
                for r in changed
            ],
        )


async def link_created(
    session: AsyncSession, *, links: Sequence[tuple[uuid.UUID, str, str]], now: datetime
) -> None:
    """Stores created CRM records' ids on their contacts: (contact id, object, record id)."""
    if not links:
        return
    await session.execute(
        update(Contact.__table__)
        .where(Contact.id == bindparam("b_id"), Contact.external_id.is_(None))
        .values(crm_object=bindparam("b_object"), external_id=bindparam("b_ext"), updated_at=now),
        [{"b_id": cid, "b_object": obj, "b_ext": ext} for cid, obj, ext in links],
    )


async def push_log_entries(
    session: AsyncSession, *, account_id: str, event_ids: Sequence[str]
) -> dict[str, PushLog]:
    """Returns the push log entries of these events, by event id."""
    if not event_ids:
        return {}
    rows = (
        await session.scalars(
            select(PushLog).where(PushLog.account_id == account_id, PushLog.event_id.in_(event_ids))
        )
    ).all()
    return {row.event_id: row for row in rows}


async def add_push_log(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> None:
    """Inserts push log entries; an event already logged keeps its entry (R18)."""
    if entries:
        await session.execute(
            pg_insert(PushLog.__table__).on_conflict_do_nothing(index_elements=["account_id", "event_id"]),
            entries,
        )


async def finish_push_log(session: AsyncSession, results: Sequence[dict[str, Any]]) -> None:
    """Records the CRM's answer on pending entries: status, crm_id, error, attempts, updated_at."""
    if not results:
        return
    await session.execute(
        update(PushLog.__table__)
        .where(PushLog.account_id == bindparam("b_account"), PushLog.event_id == bindparam("b_event"))
        .values(
            status=bindparam("b_status"),
            crm_id=bindparam("b_crm_id"),
            error_code=bindparam("b_code"),
            error_message=bindparam("b_message"),
            attempts=PushLog.attempts + bindparam("b_attempts"),
            updated_at=bindparam("b_at"),
        ),
        [{f"b_{k}": v for k, v in r.items()} for r in results],
    )


async def pending_outbound(
    session: AsyncSession, *, account_id: str, after: uuid.UUID | None, limit: int
) -> list[tuple[StoredContact, datetime]]:
    """Returns the next contacts (by id) whose score or opt-out waits for the outbound job."""
    query = (
        select(Contact)
        .where(Contact.account_id == account_id, Contact.outbound_pending_at.is_not(None))
        .order_by(Contact.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Contact.id > after)
    rows = (await session.scalars(query)).all()
    return [
        (
            StoredContact(
                id=row.id,
                account_id=row.account_id,
                crm_object=row.crm_object,
                external_id=row.external_id,
                email=row.email,
                fields=dict(row.fields),
                raw_meta=dict(row.field_meta),
                outbound_pending=True,
            ),
            row.outbound_pending_at,  # type: ignore[misc]
        )
        for row in rows
    ]


async def clear_outbound(session: AsyncSession, *, seen: Sequence[tuple[uuid.UUID, datetime]]) -> None:
    """Clears the outbound flag of contacts unless it was set again since it was read."""
    if seen:
        await session.execute(
            update(Contact.__table__)
            .where(Contact.id == bindparam("b_id"), Contact.outbound_pending_at == bindparam("b_seen"))
            .values(outbound_pending_at=None),
            [{"b_id": cid, "b_seen": at} for cid, at in seen],
        )
