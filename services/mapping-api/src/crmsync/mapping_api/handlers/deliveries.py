"""What operators do about pushes that wait or failed and about dead letters (R24).

A failed push goes back in line with a fresh horizon and the pusher's
re-delivery sends it; a dead-lettered event is sent again through the
contact-change topic (the outbox, in the transaction that forgets its push log
entry), so an event refused for an unknown field goes through once it is mapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from crmsync.common.domain.redelivery import FAILED, WaitingPush
from crmsync.mapping_api.handlers.errors import Conflict, NotFound
from crmsync.mapping_api.handlers.ports import DeadLetterTopic, OperatorTransactions
from crmsync.mapping_api.operator_values import DeadLetterInfo, PushSummary, Replayed
from crmsync.mapping_api.values import Page

T = TypeVar("T", WaitingPush, DeadLetterInfo)
# Dead letters read per statement when replaying all of them.
_REPLAY_PAGE = 500


async def list_pushes(
    tx: OperatorTransactions,
    *,
    account_id: str,
    state: str | None = None,
    error_code: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page[WaitingPush]:
    """Returns the account's waiting or failed pushes, oldest first."""
    async with tx.read() as stores:
        rows = await stores.deliveries.page(
            account_id, state=state, error_code=error_code or None, after_id=after, limit=limit + 1
        )
    return _page(rows, limit)


async def push_summary(tx: OperatorTransactions, *, account_id: str) -> PushSummary:
    """Returns the account's pushes by state and push log entries by status, each by error code."""
    async with tx.read() as stores:
        return await stores.deliveries.summary(account_id)


async def retry_push(tx: OperatorTransactions, *, account_id: str, push_id: int, now: datetime) -> int:
    """Puts one failed push back in line (joined to the contact's waiting push, if any); returns 1."""
    async with tx.begin() as stores:
        push = await stores.deliveries.get(account_id, push_id)
        if push is None:
            raise NotFound("push not found", field="push_id")
        if push.state != FAILED:
            raise Conflict(f"the push is {push.state}, not failed: it is sent again already", field="push_id")
        return await stores.deliveries.retry_failed(account_id, now=now, ids=[push_id])


async def retry_failed_pushes(
    tx: OperatorTransactions, *, account_id: str, error_code: str | None, now: datetime
) -> int:
    """Puts every failed push of the account (of an error code) back in line; returns how many."""
    async with tx.begin() as stores:
        return await stores.deliveries.retry_failed(account_id, now=now, error_code=error_code or None)


async def list_dead_letters(
    tx: OperatorTransactions, *, account_id: str, after: int | None = None, limit: int = 50
) -> Page[DeadLetterInfo]:
    """Returns the account's dead-lettered events with their reasons, oldest first."""
    async with tx.read() as stores:
        rows = await stores.deliveries.dead_letters(account_id, after_id=after, limit=limit + 1)
    return _page(rows, limit)


async def replay_dead_letter(
    tx: OperatorTransactions, topic: DeadLetterTopic, *, account_id: str, event_id: str
) -> Replayed:
    """Sends one dead-lettered event of the account through the contact-change topic again."""
    async with tx.read() as stores:
        letters = await stores.deliveries.dead_letters(account_id, event_ids=[event_id], limit=1)
    if not letters:
        raise NotFound("dead letter not found", field="event_id")
    replayed = await _replay(tx, topic, account_id, [event_id])
    if replayed.not_on_topic:
        raise Conflict(
            "the dead-letter topic no longer holds this event (past its retention)", field="event_id"
        )
    if not replayed.event_ids:
        raise NotFound("dead letter not found (replayed meanwhile)", field="event_id")
    return replayed


async def replay_dead_letters(
    tx: OperatorTransactions, topic: DeadLetterTopic, *, account_id: str
) -> Replayed:
    """Sends every dead-lettered event of the account through the contact-change topic again."""
    event_ids: list[str] = []
    after: int | None = None
    async with tx.read() as stores:
        while page := await stores.deliveries.dead_letters(account_id, after_id=after, limit=_REPLAY_PAGE):
            event_ids.extend(d.event_id for d in page)
            after = page[-1].id
    return await _replay(tx, topic, account_id, event_ids)


async def _replay(
    tx: OperatorTransactions, topic: DeadLetterTopic, account_id: str, event_ids: Sequence[str]
) -> Replayed:
    if not event_ids:
        return Replayed(())
    # The topic is read outside the transaction: a scan of it must not hold row locks.
    originals = await topic.originals(account_id, event_ids)
    async with tx.begin() as stores:
        released = await stores.deliveries.release_for_replay(account_id, list(originals))
        for released_id in released:
            stores.outbox.contact_change(originals[released_id])
    return Replayed(tuple(released), tuple(e for e in event_ids if e not in originals))


def _page(rows: list[T], limit: int) -> Page[T]:
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1].id if more else None
    return Page(rows, str(last) if last is not None else None)
