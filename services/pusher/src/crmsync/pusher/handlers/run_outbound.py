"""RunOutbound: send every score and opt-out that changed since the last run (R11).

Contacts flagged `outbound_pending_at` are read in pages of one composite
batch, decided with `decide_outbound`, and written. A flag is cleared for
what was sent, refused for good, or handed to re-delivery (still transient
after the round of retries, or the budget at its reserve: it waits in the
store like an event's push, R24), and only if no newer change set it again
meanwhile; without a connection it stays flagged for the next run. The run
is logged once in the push log under the job id, so a redelivered job has no
second effect (R18).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.domain.push import ContactState, decide_outbound
from crmsync.common.domain.redelivery import WaitingValue
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import RunOutbound
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.hold import contact_fields, hold
from crmsync.pusher.handlers.ports import AccountConfiguration, StoredContact
from crmsync.pusher.handlers.record import NO_CONNECTION, Error, outbound_entry
from crmsync.pusher.handlers.validate import UNKNOWN_ACCOUNT
from crmsync.pusher.values import Outcome, PlannedWrite

log = structlog.get_logger(__name__)


def outbound_event_id(job_id: str) -> str:
    """Returns the push log key of an outbound run."""
    return f"outbound:{job_id}"


@dataclass
class _Run:
    """What an outbound run has done so far."""

    counts: dict[str, int] = field(
        default_factory=lambda: {
            "sent": 0,
            "failed": 0,
            "nothing_to_send": 0,
            "kept_for_retry": 0,
            "waiting": 0,
        }
    )
    first_error: Error | None = None

    def count(self, what: str, error: Error | None = None) -> None:
        self.counts[what] += 1
        self.first_error = self.first_error or error


async def handle_outbound_jobs(ctx: PushContext, deliveries: Sequence[Delivery[RunOutbound]]) -> None:
    """Runs each job in turn."""
    for d in deliveries:
        await run_outbound(ctx, d)


async def run_outbound(ctx: PushContext, delivery: Delivery[RunOutbound]) -> None:
    job = delivery.message
    event_id = outbound_event_id(job.job_id)
    async with ctx.store.read() as tx:
        if not await tx.accounts.existing([job.account_id]):
            await ctx.dead_letters.send(delivery, error=UNKNOWN_ACCOUNT)
            return
        if await tx.push_log.entries(account_id=job.account_id, event_ids=[event_id]):
            return
        config = await tx.accounts.config(job.account_id, cached=False)
    run = _Run()
    after: uuid.UUID | None = None
    while True:
        async with ctx.store.read() as tx:
            page = await tx.contacts.pending_outbound(
                account_id=job.account_id, after=after, limit=ctx.crm.batch_size
            )
        if not page:
            break
        after = page[-1][0].id
        clear, held = await _send_page(ctx, config, page, run, event_id=event_id)
        async with ctx.store.begin() as tx:
            if held:
                await hold(ctx, tx, job.account_id, held, now=utc_now())
            await tx.contacts.clear_outbound(seen=clear)
    entry = outbound_entry(
        job, event_id=event_id, counts=run.counts, first_error=run.first_error, at=utc_now()
    )
    async with ctx.store.begin() as tx:
        await tx.push_log.add([entry])
    log.info("outbound_run", account_id=job.account_id, job_id=job.job_id, **run.counts)


async def _send_page(
    ctx: PushContext,
    config: AccountConfiguration,
    page: Sequence[tuple[StoredContact, datetime]],
    run: _Run,
    *,
    event_id: str,
) -> tuple[list[tuple[uuid.UUID, datetime]], list[tuple[PlannedWrite, Outcome]]]:
    """Decides and sends one page; returns the flags to clear (with the time each was read at)
    and the writes to hold for re-delivery."""
    clear: list[tuple[uuid.UUID, datetime]] = []
    held: list[tuple[PlannedWrite, Outcome]] = []
    writes: list[PlannedWrite] = []
    seen_at: list[datetime] = []
    for contact, pending_at in page:
        decision = decide_outbound(
            mapping=config.mapping,
            policy=config.policy,
            contact=ContactState(contact.crm_object, contact.external_id, contact.values),
        )
        if not decision.sends:
            run.count("nothing_to_send")
            clear.append((contact.id, pending_at))
        elif config.connection is None:
            # Kept flagged: a connection made later sends it.
            run.count("kept_for_retry", NO_CONNECTION)
        else:
            assert contact.crm_object is not None
            writes.append(
                PlannedWrite(
                    contact_id=contact.id,
                    operation="update",
                    crm_object=contact.crm_object,
                    crm_id=contact.external_id,
                    values=decision.values,
                    email_lower=None,
                    event_ids=[],
                    origins=_origins(config, contact, decision.values, event_id=event_id, at=pending_at),
                )
            )
            seen_at.append(pending_at)
    if not writes:
        return clear, held
    assert config.connection is not None
    outcomes = await ctx.crm.write(config.connection, writes, mapping=config.mapping)
    for write, outcome, at in zip(writes, outcomes, seen_at, strict=True):
        if outcome.success:
            run.count("sent")
        elif outcome.waits:
            run.count("waiting")
            held.append((write, outcome))
        else:
            run.count("failed", Error(outcome.error_code, outcome.error_message))
        clear.append((write.contact_id, at))
    return clear, held


def _origins(
    config: AccountConfiguration,
    contact: StoredContact,
    values: dict[str, Any],
    *,
    event_id: str,
    at: datetime,
) -> dict[str, WaitingValue]:
    """Returns the values as waiting values, each dated by its field's change (the flag's time if unknown)."""
    assert contact.crm_object is not None
    fields = contact_fields(config.mapping, contact.crm_object)
    meta = contact.view(fields.values()).meta
    return {
        name: WaitingValue(value, meta[f].at if (f := fields.get(name)) in meta else at, event_id, f)
        for name, value in values.items()
    }
