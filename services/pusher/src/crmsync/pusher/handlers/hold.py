"""Holding pushes the CRM could not take now: they wait in the store for re-delivery (R24).

A write still transient after its round of retries, or parked by an API
budget at its reserve, joins its contact's waiting push (or starts one), so a
contact has one waiting push whose values are the newest of each field.
Callers lock the contacts first (`ContactStore.find`), then their pushes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from crmsync.common.domain.mapping import Mapping
from crmsync.common.domain.redelivery import FAILED, WaitingPush, WaitingValue, waiting_values
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.ports import ContactRefs, StoreSession
from crmsync.pusher.values import Outcome, PlannedWrite


def contact_fields(mapping: Mapping, crm_object: str) -> dict[str, str]:
    """Returns {CRM field: contact field} of the fields mapped on that object (the first row wins)."""
    fields: dict[str, str] = {}
    for row in mapping.rows:
        source = row.source_for(crm_object)
        if source:
            fields.setdefault(source, row.destination)
    return fields


def origins_of(write: PlannedWrite, *, at: datetime) -> dict[str, WaitingValue]:
    """Returns the write's values as waiting values; one without an origin dates from `at`."""
    fallback = waiting_values(
        write.values, fields={}, occurred_at=at, event_id=write.event_ids[-1] if write.event_ids else ""
    )
    return {n: write.origins.get(n) or fallback[n] for n in write.values}


def new_push(account_id: str, write: PlannedWrite, *, now: datetime) -> WaitingPush:
    """Returns an empty waiting push for the write's contact."""
    return WaitingPush(
        account_id=account_id,
        contact_id=write.contact_id,
        operation=write.operation,
        crm_object=write.crm_object,
        crm_id=write.crm_id,
        email_lower=write.email_lower,
        values={},
        next_attempt_at=now,
    )


def after_outcome(ctx: PushContext, push: WaitingPush, outcome: Outcome, *, now: datetime) -> WaitingPush:
    """Returns the push after an attempt the CRM could not take: parked, waiting again, or failed."""
    if outcome.parked:
        return push.parked(
            until=now + ctx.budget_recheck, error_code=outcome.error_code, error_message=outcome.error_message
        )
    retry_after = timedelta(seconds=outcome.retry_after) if outcome.retry_after else None
    return push.failed_again(
        policy=ctx.redelivery,
        now=now,
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        retry_after=retry_after,
    )


async def join_waiting(
    tx: StoreSession, account_id: str, writes: Sequence[PlannedWrite], *, now: datetime
) -> set[uuid.UUID]:
    """Joins writes of contacts that have a waiting push to it instead of sending them; returns those contacts.

    A later change must not overtake a waiting one (R24): it goes with it.
    """
    waiting = await tx.deliveries.waiting_for(account_id, [w.contact_id for w in writes])
    joined = []
    for write in writes:
        push = waiting.get(write.contact_id)
        if push is not None:
            joined.append(push.joined(origins_of(write, at=now), write.event_ids))
    await tx.deliveries.save(joined, now=now)
    return {p.contact_id for p in joined}


async def hold(
    ctx: PushContext,
    tx: StoreSession,
    account_id: str,
    held: Sequence[tuple[PlannedWrite, Outcome]],
    *,
    now: datetime,
) -> list[WaitingPush]:
    """Holds writes the CRM could not take in their contacts' waiting pushes; returns those that failed for good."""
    ids = tuple(dict.fromkeys(w.contact_id for w, _ in held))
    await tx.contacts.find(account_id, ContactRefs(ids=ids))  # locks the contacts, then their pushes
    waiting = await tx.deliveries.waiting_for(account_id, list(ids))
    for write, outcome in held:
        push = waiting.get(write.contact_id) or new_push(account_id, write, now=now)
        push = push.joined(origins_of(write, at=now), write.event_ids)
        waiting[write.contact_id] = after_outcome(ctx, push, outcome, now=now)
    await tx.deliveries.save(list(waiting.values()), now=now)
    return [p for p in waiting.values() if p.state == FAILED]
