"""Step 1 for one account: its new events applied to the contact store and logged, in one
transaction; returns the CRM writes they call for."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

from crmsync.common.clock import utc_now
from crmsync.common.domain.push_log import WAITING, PushLogEntry
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.decide import Planner, decide_event
from crmsync.pusher.handlers.hold import join_waiting
from crmsync.pusher.handlers.ports import AccountConfiguration, StoreSession
from crmsync.pusher.handlers.push import AccountPush
from crmsync.pusher.handlers.record import invalid_entry
from crmsync.pusher.handlers.resolve import ContactIndex, find_contacts, unknown_contact
from crmsync.pusher.handlers.validate import (
    FieldLengths,
    field_lengths,
    known_fields,
    unknown_field,
    value_problem,
)


async def apply_account(
    ctx: PushContext, account_id: str, batch: list[Delivery[ContactChanged]]
) -> AccountPush | None:
    """Applies one account's new events and logs them; returns the CRM writes they call for."""
    now = utc_now()
    started = time.perf_counter()
    planner = Planner()
    # The describe is read outside the transaction: a CRM call must not hold its locks.
    async with ctx.store.read() as tx:
        lengths = await field_lengths(ctx.crm, (await tx.accounts.config(account_id)).connection)
    async with ctx.store.begin() as tx:
        config = await tx.accounts.config(account_id)
        index = await find_contacts(tx.contacts, account_id, [d.message for d in batch])
        known = known_fields(config.mapping)
        entries = [await _apply_event(ctx, config, known, lengths, index, planner, d) for d in batch]
        await tx.contacts.save(index.all(), now=now)
        entries = await _join_waiting(tx, account_id, planner, entries, now=now)
        await tx.push_log.add(entries)
    writes = planner.writes
    if not writes:
        return None
    assert config.connection is not None
    return AccountPush(
        account_id=account_id,
        connection=config.connection,
        mapping=config.mapping,
        writes=writes,
        batch=batch,
        applied_ms=round((time.perf_counter() - started) * 1000, 1),
        waited_ms=round(now.timestamp() * 1000 - min(d.timestamp_ms for d in batch), 1),
    )


async def _join_waiting(
    tx: StoreSession, account_id: str, planner: Planner, entries: list[PushLogEntry], *, now: datetime
) -> list[PushLogEntry]:
    """Sends no write of a contact whose push waits: it joins that push, its entries `waiting` (R24)."""
    writes = planner.writes
    joined = await join_waiting(tx, account_id, writes, now=now) if writes else set()
    if not joined:
        return entries
    planner.drop(joined)
    waiting = {e for w in writes if w.contact_id in joined for e in w.event_ids}
    return [replace(e, status=WAITING) if e.event_id in waiting else e for e in entries]


async def _apply_event(
    ctx: PushContext,
    config: AccountConfiguration,
    known: set[str],
    lengths: FieldLengths,
    index: ContactIndex,
    planner: Planner,
    delivery: Delivery[ContactChanged],
) -> PushLogEntry:
    event = delivery.message
    error = unknown_field(event, known) or value_problem(event, config.mapping)
    contact = None if error is not None else index.find(event)
    if error is None and contact is None:
        error = unknown_contact(event)
    if error is not None:
        await ctx.dead_letters.send(delivery, error=error)
        return invalid_entry(event, error)
    assert contact is not None
    return decide_event(config, contact, event, planner, lengths=lengths)
