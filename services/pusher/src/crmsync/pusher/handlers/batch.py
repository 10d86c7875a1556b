"""A batch of contact-change events: step 1 over its lanes, and the result steps 2 and 3 push."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.apply import apply_account
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.push import AccountPush
from crmsync.pusher.handlers.reconcile import reconcile
from crmsync.pusher.handlers.validate import UNKNOWN_ACCOUNT

# A lane costs its own transactions and CRM requests: below this many events a
# second lane adds round trips rather than overlap.
EVENTS_PER_LANE = 100

Wait = Callable[[], Awaitable[None]]


async def _no_wait() -> None:
    return None


def lane_count(events: int, lanes: int) -> int:
    """Returns how many lanes a batch of `events` is spread over, at most `lanes`.

    Any count keeps a partition's events in one lane, hence in order; batches
    are handled one after another.
    """
    return max(1, min(lanes, events // EVENTS_PER_LANE))


@dataclass(frozen=True)
class AppliedBatch:
    """A batch after step 1: in the store and the push log, its CRM writes (steps 2 and 3) to do."""

    pushes: list[AccountPush]
    event_ids: frozenset[str]

    @property
    def creates(self) -> bool:
        return any(w.operation == "create" for p in self.pushes for w in p.writes)

    def blocks(self, deliveries: Sequence[Delivery[ContactChanged]]) -> bool:
        """True when the next batch must not be applied before this one is pushed.

        A record being created has no CRM id yet: a later event for its contact
        would be decided as for a contact without a record. An event seen again
        would find this batch's `pending` entry and reconcile it while it is
        being written.
        """
        return self.creates or any(d.message.event_id in self.event_ids for d in deliveries)

    async def push(self, ctx: PushContext) -> None:
        """Steps 2 and 3: sends the writes, then records each answer; accounts concurrently."""
        await asyncio.gather(*(p.send(ctx) for p in self.pushes))


async def apply_contact_changes(
    ctx: PushContext, deliveries: Sequence[Delivery[ContactChanged]], *, before_reconcile: Wait = _no_wait
) -> AppliedBatch:
    """Step 1 for a batch: returns it applied to the store and logged, its CRM writes still to send.

    Partitions are spread over `ctx.lanes` lanes handled concurrently, each in
    its own transactions: one contact's events share a key, hence a partition
    and a lane, so they stay in order while the lanes overlap their waits on
    the database. `before_reconcile` is awaited before any pending entry is
    reconciled: the batch before may still be writing to the CRM.
    """
    lanes: dict[int, list[Delivery[ContactChanged]]] = {}
    count = lane_count(len(deliveries), ctx.lanes)
    for d in deliveries:
        lanes.setdefault(d.partition % count, []).append(d)

    async def lane(events: list[Delivery[ContactChanged]]) -> list[AccountPush]:
        # Pooled connections are not pinged before use: one the server dropped fails
        # the lane, which runs again: its done events are skipped, its applied ones
        # (logged `pending`) reconciled.
        return await ctx.store.retry_if_connection_lost(
            lambda: _handle_lane(ctx, events, before_reconcile), step="push_batch_retried"
        )

    # Every lane runs to its end before anything is raised.
    results = await asyncio.gather(*(lane(events) for events in lanes.values()), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    pushes = [p for r in results if not isinstance(r, BaseException) for p in r]
    return AppliedBatch(pushes, event_ids=frozenset(d.message.event_id for d in deliveries))


async def _handle_lane(
    ctx: PushContext, deliveries: Sequence[Delivery[ContactChanged]], before_reconcile: Wait
) -> list[AccountPush]:
    by_account: dict[str, dict[str, Delivery[ContactChanged]]] = {}
    for d in deliveries:
        by_account.setdefault(d.message.account_id, {}).setdefault(d.message.event_id, d)
    # One read for the lane: which accounts exist and which events are already logged.
    async with ctx.store.autocommit() as tx:
        logged = await tx.push_log.logged_events(by_account)
    pushes: list[AccountPush] = []
    for account_id, events in by_account.items():
        if account_id not in logged:
            for d in events.values():
                await ctx.dead_letters.send(d, error=UNKNOWN_ACCOUNT)
            continue
        entries = logged[account_id]
        pending = [entries[e] for e in events if e in entries and entries[e].pending]
        fresh = [d for e, d in events.items() if e not in entries]
        if pending:
            await before_reconcile()
            await reconcile(ctx, account_id, pending)
        if fresh and (push := await apply_account(ctx, account_id, fresh)) is not None:
            pushes.append(push)
    return pushes
