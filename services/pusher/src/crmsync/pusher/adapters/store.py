"""Postgres access of the pusher: account configuration, contacts, the push log.

Helpers take the caller's session and never commit: the handler owns the
transaction (one per use case).
"""

from __future__ import annotations

import time
import uuid
from collections import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, Uuid, and_, any_, bindparam, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
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
from crmsync.common.domain.contacts import ContactValues, is_implied, stored_field_meta
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
    Contact.crm_modstamp,
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

    Field metadata stays in its stored JSON form, where a field without an
    entry is the CRM's as of `crm_modstamp`, and is parsed only for the fields
    an event touches: a contact may have many fields, an event few.
    """

    id: uuid.UUID
    account_id: str
    crm_object: str | None
    external_id: str | None
    email: str | None
    fields: dict[str, Any]
    raw_meta: dict[str, Any]
    crm_modstamp: datetime | None = None
    outbound_pending: bool = False  # a score or opt-out changed locally now: (re)set the flag
    new: bool = False
    dirty: bool = False
    # Fields whose value or metadata the batch set: only these are written back.
    touched: set[str] = field(default_factory=set)

    @property
    def values(self) -> ContactValues:
        """Returns every value with its parsed origin and time."""
        return ContactValues.from_stored(self.fields, self.raw_meta, self.crm_modstamp)

    def view(self, names: Iterable[str]) -> ContactValues:
        """Returns every value, with origin and time parsed for `names` only."""
        fields, meta, stamp = self.fields, self.raw_meta, self.crm_modstamp
        return ContactValues(
            fields, {n: m for n in names if (m := stored_field_meta(n, fields, meta, stamp)) is not None}
        )

    def apply(self, values: ContactValues, names: Iterable[str]) -> None:
        """Takes the values of a merge whose touched fields are `names`."""
        self.fields = dict(values.fields)
        for name in names:
            meta = values.meta.get(name)
            if meta is not None and not is_implied(meta, self.crm_modstamp):
                self.raw_meta[name] = meta.to_json()
            self.touched.add(name)
        self.dirty = True


def _any(values: Iterable[Any], item_type: type[Text] | type[Uuid]) -> Any:
    """Returns `= any(array)` for the values: one bound array, whatever their number.

    `in_()` writes one placeholder per value, so each batch size is a new
    statement for the server to parse and plan.
    """
    return any_(bindparam(None, list(values), type_=ARRAY(item_type())))


async def existing_accounts(session: AsyncSession, account_ids: Iterable[str]) -> set[str]:
    """Returns which of these accounts exist."""
    ids = list(set(account_ids))
    if not ids:
        return set()
    return set((await session.scalars(select(Account.id).where(Account.id == _any(ids, Text)))).all())


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


class ConfigCache:
    """Account configurations kept for `ttl_s` seconds: a saved mapping applies within that time."""

    def __init__(self, *, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, AccountConfig]] = {}

    async def get(self, session: AsyncSession, account_id: str) -> AccountConfig:
        now = time.monotonic()
        cached = self._entries.get(account_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        config = await load_config(session, account_id)
        if self._ttl_s > 0:
            self._entries[account_id] = (now, config)
        return config


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
    if not (ids or external_ids or emails_lower):
        return []
    # Always the same three conditions, so one prepared statement serves every batch.
    conditions = [
        Contact.id == _any(ids, Uuid),
        Contact.external_id == _any(external_ids, Text),
        Contact.email_lower == _any(emails_lower, Text),
    ]
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
            crm_modstamp=row.crm_modstamp,
        )
        for row in rows
    ]


async def save_contacts(session: AsyncSession, contacts: Iterable[StoredContact], *, now: datetime) -> None:
    """Inserts the new contacts and updates the changed ones (the fields they touched)."""
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
            # Only what the batch touched: a contact's other fields are neither sent
            # over the wire again nor parsed again by the server.
            row["fields"] = {n: c.fields[n] for n in c.touched if n in c.fields}
            row["field_meta"] = {n: c.raw_meta[n] for n in c.touched if n in c.raw_meta}
            changed.append(row)
    if new:
        await session.execute(insert(Contact.__table__), new)
    if changed:
        # One statement over arrays: an executemany of single-row updates costs a
        # round trip per row.
        await session.execute(
            text(
                "update contacts c set email = v.email, fields = c.fields || v.fields::jsonb, "
                "field_meta = c.field_meta || v.meta::jsonb, updated_at = :now, "
                # A new change moves the flag's time, so an outbound run that read the
                # older time does not clear it (clear_outbound compares the time).
                "outbound_pending_at = coalesce(v.pending, c.outbound_pending_at) "
                "from unnest(cast(:ids as uuid[]), cast(:emails as text[]), cast(:fields as text[]), "
                "cast(:metas as text[]), cast(:pending as timestamptz[])) "
                "as v(id, email, fields, meta, pending) where c.id = v.id"
            ),
            {
                "now": now,
                "ids": [r["id"] for r in changed],
                "emails": [r["email"] for r in changed],
                "fields": [orjson.dumps(r["fields"]).decode() for r in changed],
                "metas": [orjson.dumps(r["field_meta"]).decode() for r in changed],
                "pending": [r["outbound_pending_at"] for r in changed],
            },
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
            select(PushLog).where(PushLog.account_id == account_id, PushLog.event_id == _any(event_ids, Text))
        )
    ).all()
    return {row.event_id: row for row in rows}


async def logged_events(
    session: AsyncSession, events: abc.Mapping[str, abc.Collection[str]]
) -> dict[str, dict[str, PushLog]]:
    """Returns, for each of these accounts that exists, the push log entries of its events by event id.

    One statement for a batch: an account missing from the answer does not exist.
    """
    if not events:
        return {}
    event_ids = sorted({e for ids in events.values() for e in ids})
    rows = (
        await session.execute(
            select(Account.id, PushLog)
            .outerjoin(
                PushLog, and_(PushLog.account_id == Account.id, PushLog.event_id == _any(event_ids, Text))
            )
            .where(Account.id == _any(list(events), Text))
        )
    ).all()
    found: dict[str, dict[str, PushLog]] = {}
    for account_id, entry in rows:
        entries = found.setdefault(account_id, {})
        if entry is not None and entry.event_id in events[account_id]:
            entries[entry.event_id] = entry
    return found


async def add_push_log(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> None:
    """Inserts push log entries; an event already logged keeps its entry (R18)."""
    if not entries:
        return
    columns = {
        "account_id": "text",
        "event_id": "text",
        "source": "text",
        "contact_id": "uuid",
        "crm_object": "text",
        "crm_id": "text",
        "operation": "text",
        "status": "text",
        "sent_fields": "jsonb",
        "decisions": "jsonb",
        "error_code": "text",
        "error_message": "text",
        "attempts": "int",
        "occurred_at": "timestamptz",
    }
    arrays = {
        name: [
            orjson.dumps(e.get(name) or {}).decode()
            if kind == "jsonb"
            else e.get(name, 0 if kind == "int" else None)
            for e in entries
        ]
        for name, kind in columns.items()
    }
    unnest = ", ".join(
        f"cast(:{name} as {'text' if kind == 'jsonb' else kind}[])" for name, kind in columns.items()
    )
    select_list = ", ".join(f"{name}::jsonb" if kind == "jsonb" else name for name, kind in columns.items())
    # One statement over arrays, as in finish_push_log.
    await session.execute(
        text(
            f"insert into push_log ({', '.join(columns)}) select {select_list} "
            f"from unnest({unnest}) as v({', '.join(columns)}) "
            "on conflict (account_id, event_id) do nothing"
        ),
        arrays,
    )


async def finish_push_log(session: AsyncSession, results: Sequence[dict[str, Any]]) -> None:
    """Records the CRM's answer on pending entries: status, crm_id, error, attempts, updated_at."""
    if not results:
        return
    await session.execute(
        text(
            "update push_log p set status = v.status, crm_id = v.crm_id, error_code = v.code, "
            "error_message = v.message, attempts = p.attempts + v.attempts, updated_at = v.at "
            "from unnest(cast(:accounts as text[]), cast(:events as text[]), cast(:statuses as text[]), "
            "cast(:crm_ids as text[]), cast(:codes as text[]), cast(:messages as text[]), "
            "cast(:attempts as int[]), cast(:ats as timestamptz[])) "
            "as v(account_id, event_id, status, crm_id, code, message, attempts, at) "
            "where p.account_id = v.account_id and p.event_id = v.event_id"
        ),
        {
            "accounts": [r["account"] for r in results],
            "events": [r["event"] for r in results],
            "statuses": [r["status"] for r in results],
            "crm_ids": [r["crm_id"] for r in results],
            "codes": [r["code"] for r in results],
            "messages": [r["message"] for r in results],
            "attempts": [r["attempts"] for r in results],
            "ats": [r["at"] for r in results],
        },
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
                crm_modstamp=row.crm_modstamp,
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
