"""Recording in the push log: the one place its entries and results are built, and the
record step that stores the CRM's answers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.domain.push_log import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    WAITING,
    LoggedEntry,
    PushLogEntry,
    PushResult,
)
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.common.messages import ContactChanged, RunOutbound
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.hold import hold
from crmsync.pusher.handlers.ports import Store
from crmsync.pusher.values import CreatedRecord, Outcome, PlannedWrite

log = structlog.get_logger(__name__)

INVALID_EVENT = "INVALID_EVENT"


@dataclass(frozen=True)
class Error:
    """An error code and message, as the push log records them."""

    code: str | None
    message: str | None


NO_CONNECTION = Error("NO_CONNECTION", "no CRM connection")


def event_entry(
    event: ContactChanged,
    *,
    contact_id: uuid.UUID | None,
    status: str,
    operation: str = "none",
    crm_object: str | None = None,
    crm_id: str | None = None,
    sent_fields: Mapping[str, Any] | None = None,
    decisions: Mapping[str, Any] | None = None,
    error: Error | None = None,
) -> PushLogEntry:
    """Returns the entry of a contact-change event as first written."""
    return PushLogEntry(
        account_id=event.account_id,
        event_id=event.event_id,
        source=event.source.value,
        operation=operation,
        status=status,
        contact_id=contact_id,
        crm_object=crm_object,
        crm_id=crm_id,
        sent_fields=dict(sent_fields or {}),
        decisions=dict(decisions or {}),
        error_code=error.code if error else None,
        error_message=error.message if error else None,
        attempts=0,
        occurred_at=event.occurred_at,
    )


def invalid_entry(event: ContactChanged, error: str) -> PushLogEntry:
    """Returns the entry of an event that cannot be applied: skipped, so a redelivery is not dead-lettered twice."""
    return event_entry(event, contact_id=None, status=SKIPPED, error=Error(INVALID_EVENT, error))


def outbound_entry(
    job: RunOutbound,
    *,
    event_id: str,
    counts: Mapping[str, int],
    first_error: Error | None,
    at: datetime,
) -> PushLogEntry:
    """Returns the one entry of an outbound run: failed when anything failed or is kept for a retry.

    Values that wait for re-delivery (`waiting`) are the store's now: the run did its part.
    """
    return PushLogEntry(
        account_id=job.account_id,
        event_id=event_id,
        source="outbound",
        operation="outbound",
        status=FAILED if counts["failed"] or counts["kept_for_retry"] else SUCCEEDED,
        decisions=dict(counts),
        error_code=first_error.code if first_error else None,
        error_message=first_error.message if first_error else None,
        attempts=1,
        occurred_at=job.requested_at,
        updated_at=at,
    )


def results_of(
    *, account_id: str, writes: Sequence[PlannedWrite], outcomes: Sequence[Outcome], at: datetime
) -> tuple[list[PushResult], list[CreatedRecord]]:
    """Returns the results of each write's events and the records the writes created."""
    results: list[PushResult] = []
    created: list[CreatedRecord] = []
    for write, outcome in zip(writes, outcomes, strict=True):
        if write.operation == "create" and outcome.success and outcome.crm_id:
            created.append(CreatedRecord(write.contact_id, write.crm_object, outcome.crm_id))
        status = SUCCEEDED if outcome.success else WAITING if outcome.waits else FAILED
        for event_id in write.event_ids:
            results.append(
                PushResult(
                    account_id=account_id,
                    event_id=event_id,
                    status=status,
                    crm_id=outcome.crm_id or write.crm_id,
                    attempts=outcome.attempts,
                    at=at,
                    error_code=outcome.error_code,
                    error_message=outcome.error_message,
                )
            )
    return results, created


def failed_results(entries: Sequence[LoggedEntry], *, error: Error, at: datetime) -> list[PushResult]:
    """Returns these pending entries failed, without a CRM attempt."""
    return [
        PushResult(
            account_id=p.account_id,
            event_id=p.event_id,
            status=FAILED,
            crm_id=p.crm_id,
            attempts=0,
            at=at,
            error_code=error.code,
            error_message=error.message,
        )
        for p in entries
    ]


def gave_up_results(pushes: Sequence[WaitingPush], *, at: datetime) -> list[PushResult]:
    """Returns the entries of waiting pushes given up past the horizon: failed, with the last error."""
    return [
        PushResult(
            account_id=p.account_id,
            event_id=event_id,
            status=FAILED,
            crm_id=p.crm_id,
            attempts=0,
            at=at,
            error_code=p.last_error_code,
            error_message=f"{p.last_error_message} (gave up after {p.failures} failed attempts "
            f"since {p.first_failed_at:%Y-%m-%d %H:%M} UTC)",
        )
        for p in pushes
        for event_id in p.event_ids
    ]


async def record(
    ctx: PushContext, *, account_id: str, writes: Sequence[PlannedWrite], outcomes: Sequence[Outcome]
) -> None:
    """Stores the CRM's answers on the writes' entries and the ids of the records they created.

    A write the CRM could not take now (transient, or the budget at its
    reserve) waits in the store for re-delivery, its entries `waiting` (R24).
    """
    store = ctx.store
    at = utc_now()
    results, created = results_of(account_id=account_id, writes=writes, outcomes=outcomes, at=at)
    held = [(w, o) for w, o in zip(writes, outcomes, strict=True) if o.waits]

    async def attempt() -> None:
        if created or held:
            # A created record's id and its entry's success are stored together, or
            # neither: an entry marked done without the id would let a later event create it again.
            async with store.begin() as tx:
                await tx.push_log.finish(results)
                await tx.contacts.link_created(created, now=at)
                if held:
                    given_up = await hold(ctx, tx, account_id, held, now=at)
                    await tx.push_log.finish(gave_up_results(given_up, at=at))
        else:
            async with store.autocommit() as tx:
                await tx.push_log.finish(results)

    # The CRM has answered: what is left is only to record it, on a fresh connection if need be.
    await store.retry_if_connection_lost(attempt, step="push_record_retried")
    failed = [r for r in results if r.status == FAILED]
    if failed:
        log.warning("push_failed", account_id=account_id, count=len(failed), first=failed[0])
    if held:
        log.info("push_waiting", account_id=account_id, count=len(held), first=held[0][1].error_code)


async def record_all_failed(store: Store, entries: Sequence[LoggedEntry], *, error: Error) -> None:
    """Fails these pending entries without a CRM attempt."""
    results = failed_results(entries, error=error, at=utc_now())
    async with store.begin() as tx:
        await tx.push_log.finish(results)
