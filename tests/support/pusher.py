"""Helpers for the pusher's tests: an account wired to an emulated org, seeded contacts,
events through the real broker, and waiting for the push log."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.schema import (
    Contact,
    PushLog,
    PushPolicy,
)
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS, MappingRow
from crmsync.common.messages import ContactChanged, RunOutbound
from crmsync.common.settings import CommonSettings
from crmsync.pusher.bootstrap import bootstrap
from crmsync.pusher.settings import Settings
from tests.support.broker import publish as publish
from tests.support.connections import add_connection
from tests.support.emulator import CrmOrg
from tests.support.mappings import store_mapping
from tests.support.processes import wait_for

FINAL = {"succeeded", "failed", "skipped"}


async def connect_account(
    sessions: async_sessionmaker[AsyncSession],
    settings: CommonSettings,
    *,
    account_id: str,
    org: CrmOrg,
    rows: Sequence[MappingRow] = DEFAULT_SALESFORCE_ROWS,
    default_allow_push: bool = True,
) -> None:
    """Stores the account's CRM connection to `org`, a mapping and a push policy."""
    async with sessions.begin() as session:
        add_connection(session, settings=settings, account_id=account_id, org=org, status="connected")
        session.add(PushPolicy(account_id=account_id, default_allow_push=default_allow_push))
    await save_mapping(sessions, account_id=account_id, rows=rows)


async def save_mapping(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, rows: Sequence[MappingRow]
) -> None:
    """Saves a new mapping version with these rows."""
    await store_mapping(sessions, account_id=account_id, rows=rows)


async def set_default_allow_push(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, allow: bool
) -> None:
    async with sessions.begin() as session:
        policy = await session.get(PushPolicy, account_id)
        assert policy is not None
        policy.default_allow_push = allow


def with_allow_push(rows: Iterable[MappingRow], **allow: bool | None) -> list[MappingRow]:
    """Returns the rows with Allow Push set per destination."""
    return [replace(r, allow_push=allow[r.destination]) if r.destination in allow else r for r in rows]


def crm_to_local(record: dict[str, Any], *, crm_object: str) -> dict[str, Any]:
    """Returns the local field values the puller would store for a CRM record (default mapping)."""
    values: dict[str, Any] = {}
    for row in DEFAULT_SALESFORCE_ROWS:
        source = row.source_for(crm_object)
        if source and source in record:
            values[row.destination] = record[source]
    return values


async def seed_from_crm(
    sessions: async_sessionmaker[AsyncSession],
    *,
    account_id: str,
    org: CrmOrg,
    crm_object: str,
    record_id: str,
    at: datetime | None = None,
) -> uuid.UUID:
    """Stores a contact as the puller does (every value of origin "crm", at `at`); returns its id."""
    record = org.get(crm_object, record_id)
    fields = crm_to_local(record, crm_object=crm_object)
    stamp = at or datetime.fromisoformat(record["SystemModstamp"].replace("Z", "+00:00"))
    contact = Contact(
        account_id=account_id,
        crm_object=crm_object,
        external_id=record_id,
        email=record.get("Email"),
        fields=fields,
        # The row's modstamp implies every field's origin and time.
        field_meta={},
        crm_modstamp=stamp,
    )
    async with sessions.begin() as session:
        session.add(contact)
    return contact.id


async def seed_many_from_crm(
    sessions: async_sessionmaker[AsyncSession],
    *,
    account_id: str,
    records: Sequence[dict[str, Any]],
    crm_object: str,
    at: datetime,
) -> None:
    """Stores many CRM records as pulled contacts in one transaction."""
    rows = []
    for record in records:
        fields = crm_to_local(record, crm_object=crm_object)
        rows.append(
            {
                "id": uuid.uuid4(),
                "account_id": account_id,
                "crm_object": crm_object,
                "external_id": record["Id"],
                "email": record.get("Email"),
                "fields": fields,
                "field_meta": {},
                "crm_modstamp": at,
            }
        )
    async with sessions.begin() as session:
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Contact), rows[start : start + 2000])


def event(
    account_id: str,
    *,
    changes: dict[str, Any],
    email: str | None = None,
    external_id: str | None = None,
    contact_id: uuid.UUID | None = None,
    source: str = "form",
    occurred_at: datetime | None = None,
    crm_create: str | None = None,
    event_id: str | None = None,
) -> ContactChanged:
    ref: dict[str, Any] = {}
    if email is not None:
        ref["email"] = email
    if external_id is not None:
        ref["external_id"] = external_id
    if contact_id is not None:
        ref["id"] = contact_id
    return ContactChanged.model_validate(
        {
            "event_id": event_id or uuid.uuid4().hex,
            "account_id": account_id,
            "occurred_at": occurred_at or datetime.now(UTC),
            "source": source,
            "contact": ref,
            "changes": changes,
            "crm_create": {"object": crm_create} if crm_create else None,
        }
    )


def outbound_job(account_id: str) -> RunOutbound:
    return RunOutbound(
        job_id=f"{account_id}:{uuid.uuid4().hex[:8]}", account_id=account_id, requested_at=datetime.now(UTC)
    )


def pusher_settings(settings: CommonSettings, **overrides: Any) -> Settings:
    """Returns pusher settings on the test's topics, with consumer groups of its own."""
    group = uuid.uuid4().hex[:8]
    values = settings.model_dump()
    values.update(
        pusher_group_id=f"pusher-{group}",
        outbound_group_id=f"outbound-{group}",
        http_port=0,
        push_backoff_s=0.05,
        **overrides,
    )
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_pusher(settings: CommonSettings, **overrides: Any) -> AsyncIterator[Settings]:
    """Runs the pusher in this process, with its own engine and producer, until the block ends."""
    pusher = pusher_settings(settings, **overrides)
    app = bootstrap(pusher)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop))
    try:
        yield pusher
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def push_log(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, event_ids: Iterable[str] | None = None
) -> dict[str, PushLog]:
    query = select(PushLog).where(PushLog.account_id == account_id)
    if event_ids is not None:
        query = query.where(PushLog.event_id.in_(list(event_ids)))
    async with sessions() as session:
        return {row.event_id: row for row in (await session.scalars(query)).all()}


async def wait_logged(
    sessions: async_sessionmaker[AsyncSession],
    *,
    account_id: str,
    event_ids: Sequence[str],
    timeout: float = 60,
    status: str | None = None,
) -> dict[str, PushLog]:
    """Returns the push log entries of these events once every one is final (or has `status`)."""
    wanted = FINAL if status is None else {status}
    entries: dict[str, PushLog] = {}

    async def final() -> bool:
        nonlocal entries
        entries = await push_log(sessions, account_id=account_id, event_ids=event_ids)
        return len(entries) == len(set(event_ids)) and all(e.status in wanted for e in entries.values())

    def states() -> str:
        found = {e: entries[e].status if e in entries else None for e in event_ids}
        return f"the push log to be final: {found}"

    await wait_for(final, timeout=timeout, what=states, interval=0.1)
    return entries


async def contact_row(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, email: str
) -> Contact | None:
    async with sessions() as session:
        return await session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.email_lower == email.lower())
        )
