"""RunOutbound: send every score and opt-out that changed since the last run (R11).

Contacts flagged `outbound_pending_at` are read in pages of one composite
batch, decided with `decide_outbound`, and written. A flag is cleared only
for what was sent (or refused for good), and only if no newer change set it
again meanwhile; what failed transiently stays flagged for the next run. The
run is logged once in the push log under the job id, so a redelivered job
has no second effect (R18).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from crmsync.common.domain.push import ContactState, decide_outbound
from crmsync.common.kafka.consumer import Delivery
from crmsync.common.messages import RunOutbound
from crmsync.pusher.adapters import store
from crmsync.pusher.adapters.dead_letters import dead_letter
from crmsync.pusher.handlers.contact_changed import PushContext
from crmsync.pusher.handlers.crm_writes import PlannedWrite, send_writes

log = structlog.get_logger(__name__)


def outbound_event_id(job_id: str) -> str:
    """Returns the push log key of an outbound run."""
    return f"outbound:{job_id}"


async def handle_outbound_jobs(ctx: PushContext, deliveries: Sequence[Delivery[RunOutbound]]) -> None:
    """Runs each job in turn."""
    for d in deliveries:
        await run_outbound(ctx, d)


async def run_outbound(ctx: PushContext, delivery: Delivery[RunOutbound]) -> None:
    job = delivery.message
    event_id = outbound_event_id(job.job_id)
    async with ctx.sessions() as session:
        if not await store.existing_accounts(session, [job.account_id]):
            await dead_letter(ctx.dead_letters, delivery, error="account_id: unknown account")
            return
        if await store.push_log_entries(session, account_id=job.account_id, event_ids=[event_id]):
            return
        config = await store.load_config(session, job.account_id)
    counts = {"sent": 0, "failed": 0, "nothing_to_send": 0, "kept_for_retry": 0}
    first_error: tuple[str | None, str | None] | None = None
    after: uuid.UUID | None = None
    while True:
        async with ctx.sessions() as session:
            page = await store.pending_outbound(
                session, account_id=job.account_id, after=after, limit=ctx.writer.batch_size
            )
        if not page:
            break
        after = page[-1][0].id
        clear: list[tuple[uuid.UUID, datetime]] = []
        writes: list[PlannedWrite] = []
        seen_at: list[datetime] = []
        for contact, pending_at in page:
            decision = decide_outbound(
                mapping=config.mapping,
                policy=config.policy,
                contact=ContactState(contact.crm_object, contact.external_id, contact.values),
            )
            if not decision.sends:
                counts["nothing_to_send"] += 1
                clear.append((contact.id, pending_at))
                continue
            if config.connection is None:
                # Kept flagged: a connection made later sends it.
                counts["kept_for_retry"] += 1
                first_error = first_error or ("NO_CONNECTION", "no CRM connection")
                continue
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
                )
            )
            seen_at.append(pending_at)
        if writes:
            assert config.connection is not None
            outcomes = await send_writes(
                connector=ctx.connectors.for_connection(config.connection),
                writer=ctx.writer,
                writes=writes,
                concurrency=ctx.concurrency,
                reconcile_margin=ctx.reconcile_margin,
            )
            for write, outcome, at in zip(writes, outcomes, seen_at, strict=True):
                if outcome.success:
                    counts["sent"] += 1
                elif outcome.retryable:
                    counts["kept_for_retry"] += 1
                    continue
                else:
                    counts["failed"] += 1
                    first_error = first_error or (outcome.error_code, outcome.error_message)
                clear.append((write.contact_id, at))
        async with ctx.sessions.begin() as session:
            await store.clear_outbound(session, seen=clear)
    status = "failed" if counts["failed"] or counts["kept_for_retry"] else "succeeded"
    async with ctx.sessions.begin() as session:
        await store.add_push_log(
            session,
            [
                {
                    "account_id": job.account_id,
                    "event_id": event_id,
                    "source": "outbound",
                    "operation": "outbound",
                    "status": status,
                    "decisions": counts,
                    "error_code": first_error[0] if first_error else None,
                    "error_message": first_error[1] if first_error else None,
                    "attempts": 1,
                    "occurred_at": job.requested_at,
                    "updated_at": datetime.now(UTC),
                }
            ],
        )
    log.info("outbound_run", account_id=job.account_id, job_id=job.job_id, **counts)
