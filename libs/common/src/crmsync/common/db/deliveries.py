"""Waiting and failed pushes in Postgres (R24): their rows as values, and what operators ask of them.

The pusher keeps a push the CRM could not take in `push_deliveries` until it
goes through; these functions read them back for an operator (by state,
counted by error code), put failed ones back in line, and release dead-lettered
events for a replay. They take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import PushDelivery, PushLog
from crmsync.common.domain.push_log import SKIPPED, WAITING
from crmsync.common.domain.redelivery import FAILED as GIVEN_UP
from crmsync.common.domain.redelivery import WAITING as WAITS
from crmsync.common.domain.redelivery import WaitingPush, WaitingValue

# The push log's error code of an event that was dead-lettered (R22).
INVALID_EVENT = "INVALID_EVENT"

__all__ = [
    "INVALID_EVENT",
    "DeadLetter",
    "columns_of",
    "dead_lettered",
    "delivery_counts",
    "list_deliveries",
    "push_log_counts",
    "push_of",
    "release_for_replay",
    "retry_failed",
]


def push_of(row: PushDelivery) -> WaitingPush:
    """Returns the stored row as the domain's value."""
    return WaitingPush(
        id=row.id,
        account_id=row.account_id,
        contact_id=row.contact_id,
        operation=row.operation,
        crm_object=row.crm_object,
        crm_id=row.crm_id,
        email_lower=row.email_lower,
        values={name: WaitingValue.from_json(raw) for name, raw in row.fields.items()},
        event_ids=tuple(row.event_ids),
        failures=row.failures,
        first_failed_at=row.first_failed_at,
        next_attempt_at=row.next_attempt_at,
        last_error_code=row.last_error_code,
        last_error_message=row.last_error_message,
        state=row.state,
        created_at=row.created_at,
    )


def columns_of(push: WaitingPush, *, now: datetime) -> dict[str, Any]:
    """Returns the row's columns for the push (all but its id and creation time)."""
    return {
        "account_id": push.account_id,
        "contact_id": push.contact_id,
        "operation": push.operation,
        "crm_object": push.crm_object,
        "crm_id": push.crm_id,
        "email_lower": push.email_lower,
        "fields": {name: value.to_json() for name, value in push.values.items()},
        "event_ids": list(push.event_ids),
        "state": push.state,
        "failures": push.failures,
        "first_failed_at": push.first_failed_at,
        "next_attempt_at": push.next_attempt_at,
        "last_error_code": push.last_error_code,
        "last_error_message": push.last_error_message,
        "updated_at": now,
    }


async def list_deliveries(
    session: AsyncSession,
    *,
    account_id: str,
    state: str | None = None,
    error_code: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[WaitingPush]:
    """Returns the account's pushes (of a state, an error code), oldest first, `limit` after `after_id`."""
    query = select(PushDelivery).where(PushDelivery.account_id == account_id)
    if state is not None:
        query = query.where(PushDelivery.state == state)
    if error_code is not None:
        query = query.where(PushDelivery.last_error_code == error_code)
    if after_id is not None:
        query = query.where(PushDelivery.id > after_id)
    rows = await session.scalars(query.order_by(PushDelivery.id).limit(limit))
    return [push_of(row) for row in rows]


async def delivery_counts(session: AsyncSession, *, account_id: str) -> dict[str, dict[str | None, int]]:
    """Returns the account's pushes counted by state, then by last error code (None: no error yet)."""
    return await _counts(
        session, PushDelivery.state, PushDelivery.last_error_code, PushDelivery.account_id == account_id
    )


async def push_log_counts(session: AsyncSession, *, account_id: str) -> dict[str, dict[str | None, int]]:
    """Returns the account's push log entries counted by status, then by error code."""
    return await _counts(session, PushLog.status, PushLog.error_code, PushLog.account_id == account_id)


async def _counts(
    session: AsyncSession, state: Any, code: Any, where: Any
) -> dict[str, dict[str | None, int]]:
    rows = await session.execute(select(state, code, func.count()).where(where).group_by(state, code))
    counts: dict[str, dict[str | None, int]] = {}
    for name, error_code, n in rows:
        counts.setdefault(name, {})[error_code] = n
    return counts


async def retry_failed(
    session: AsyncSession,
    *,
    account_id: str,
    now: datetime,
    ids: Sequence[int] | None = None,
    error_code: str | None = None,
) -> int:
    """Puts the account's failed pushes (these, or all; of an error code) back in line at once; returns how many.

    Each starts a new horizon. A contact that has a waiting push since gets the
    failed one's values joined to it (the newest per field wins), so the contact
    still has one push and its changes keep their order. Their events' entries
    are `waiting` again.
    """
    query = select(PushDelivery).where(PushDelivery.account_id == account_id, PushDelivery.state == GIVEN_UP)
    if ids is not None:
        query = query.where(PushDelivery.id.in_(list(ids)))
    if error_code is not None:
        query = query.where(PushDelivery.last_error_code == error_code)
    failed = [push_of(r) for r in await session.scalars(query.order_by(PushDelivery.id).with_for_update())]
    if not failed:
        return 0
    waiting = {
        p.contact_id: p
        for p in map(
            push_of,
            await session.scalars(
                select(PushDelivery)
                .where(
                    PushDelivery.account_id == account_id,
                    PushDelivery.state == WAITS,
                    PushDelivery.contact_id.in_([p.contact_id for p in failed]),
                )
                .with_for_update()
            ),
        )
    }
    for push in failed:
        assert push.id is not None
        again = waiting.get(push.contact_id)
        if again is None:
            fresh = replace(push, state=WAITS, failures=0, first_failed_at=None, next_attempt_at=now)
            await session.execute(
                update(PushDelivery).where(PushDelivery.id == push.id).values(**columns_of(fresh, now=now))
            )
            continue
        # The older values first, so the waiting push's newer ones win.
        merged = replace(again, values={}, event_ids=()).joined(push.values, push.event_ids)
        merged = merged.joined(again.values, again.event_ids)
        merged = replace(merged, next_attempt_at=now)
        assert merged.id is not None
        await session.execute(
            update(PushDelivery).where(PushDelivery.id == merged.id).values(**columns_of(merged, now=now))
        )
        await session.delete(await session.get(PushDelivery, push.id))
    events = [e for p in failed for e in p.event_ids]
    if events:
        await session.execute(
            update(PushLog)
            .where(PushLog.account_id == account_id, PushLog.event_id.in_(events))
            .values(status=WAITING, updated_at=now)
        )
    return len(failed)


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered event of a known account, as its push log entry records it (R22)."""

    id: int
    event_id: str
    source: str | None
    reason: str | None
    occurred_at: datetime | None
    logged_at: datetime


async def dead_lettered(
    session: AsyncSession,
    *,
    account_id: str,
    after_id: int | None = None,
    limit: int = 100,
    event_ids: Sequence[str] | None = None,
) -> list[DeadLetter]:
    """Returns the account's dead-lettered events with their reasons, oldest first, `limit` after `after_id`.

    The event itself is on the dead-letter topic; a replay reads it from there
    and publishes it again (through the outbox) in the transaction that calls
    `release_for_replay`. Letters of no known account, and bytes that were not
    an event, are on the topic only.
    """
    query = select(PushLog).where(
        PushLog.account_id == account_id, PushLog.status == SKIPPED, PushLog.error_code == INVALID_EVENT
    )
    if after_id is not None:
        query = query.where(PushLog.id > after_id)
    if event_ids is not None:
        query = query.where(PushLog.event_id.in_(list(event_ids)))
    rows = await session.scalars(query.order_by(PushLog.id).limit(limit))
    return [
        DeadLetter(r.id, r.event_id, r.source, r.error_message, r.occurred_at, r.created_at) for r in rows
    ]


async def release_for_replay(
    session: AsyncSession, *, account_id: str, event_ids: Sequence[str]
) -> list[str]:
    """Forgets the entries of these dead-lettered events, so a replay of them is handled anew; returns those.

    A dead-lettered event is logged `skipped` with INVALID_EVENT, which makes a
    redelivery of it a no-op (R18). Publish the replayed events (through the
    outbox) in the same transaction.
    """
    if not event_ids:
        return []
    rows = await session.scalars(
        select(PushLog).where(
            PushLog.account_id == account_id,
            PushLog.event_id.in_(list(event_ids)),
            PushLog.status == SKIPPED,
            PushLog.error_code == INVALID_EVENT,
        )
    )
    released = []
    for row in rows:
        released.append(row.event_id)
        await session.delete(row)
    return released
