"""Re-delivering waiting pushes (R24): due ones are claimed, checked against the store, sent, and settled.

Each round claims up to `limit` due pushes (`SKIP LOCKED`: replicas share
them) by moving their next attempt a lease ahead, so a replica that stops
mid-send leaves them to come back. A re-send is one try (`ctx.resend_crm`):
the re-delivery's own waits are its retries, and the time between the read
before it and the write stays short. Before a re-send, a field whose value the
store now holds from a later change is dropped: the CRM's (`superseded_by_crm`,
R13) or a later local one sent meanwhile (`superseded`). A create is looked
up first, since an earlier attempt may have made the record. The answer is
settled under the contact's lock: what was sent leaves the push (values that
joined meanwhile stay, to go next), what failed waits again with a longer
wait, or fails for good past the horizon; a budget at its reserve parks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from crmsync.common.clock import utc_now
from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.crm.interface import CrmBudgetExhausted, CrmError, CrmTransientError
from crmsync.common.domain.contacts import FieldMeta
from crmsync.common.domain.mapping import Mapping
from crmsync.common.domain.push_log import FAILED, SKIPPED, SUCCEEDED, WAITING, PushResult
from crmsync.common.domain.redelivery import FAILED as GIVEN_UP
from crmsync.common.domain.redelivery import (
    SUPERSEDED_BY_CRM,
    WaitingPush,
    WaitingValue,
    changed_in_crm,
    superseded,
)
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.hold import after_outcome
from crmsync.pusher.handlers.ports import ContactRefs, StoredContact
from crmsync.pusher.handlers.record import NO_CONNECTION, Error, gave_up_results
from crmsync.pusher.values import CreatedRecord, Outcome, PlannedWrite

log = structlog.get_logger(__name__)

CONTACT_GONE = Error("CONTACT_GONE", "the contact no longer exists")
BUDGET = "REQUEST_LIMIT_EXCEEDED"


@dataclass
class _Attempt:
    """One claimed push: what goes to the CRM, what was dropped and why, and the answer."""

    push: WaitingPush
    write: PlannedWrite | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    created: bool = False  # the write creates the record (or found the one an earlier attempt made)


async def redeliver_due(ctx: PushContext, *, limit: int, lease: timedelta) -> int:
    """Sends the pushes due now, up to `limit`; returns how many were claimed."""
    now = utc_now()
    async with ctx.store.begin() as tx:
        due = await tx.deliveries.claim_due(now=now, limit=limit, until=now + lease)
    by_account: dict[str, list[WaitingPush]] = {}
    for push in due:
        by_account.setdefault(push.account_id, []).append(push)
    for account_id, pushes in by_account.items():
        await _redeliver_account(ctx, account_id, pushes)
    return len(due)


async def _redeliver_account(ctx: PushContext, account_id: str, pushes: list[WaitingPush]) -> None:
    async with ctx.store.read() as tx:
        config = await tx.accounts.config(account_id, cached=False)
        found = await tx.contacts.find(account_id, ContactRefs(ids=tuple(p.contact_id for p in pushes)))
    contacts = {c.id: c for c in found}
    attempts = [_Attempt(p) for p in pushes]
    connection = config.connection
    for a in attempts:
        contact = contacts.get(a.push.contact_id)
        if contact is None:
            a.outcome = _refused(CONTACT_GONE)
        elif connection is None:
            a.outcome = _refused(NO_CONNECTION)
        else:
            _plan(a, contact)
    if connection is not None:
        await _send(ctx, connection, config.mapping, [a for a in attempts if a.write is not None])
    await _settle(ctx, account_id, attempts)
    log.info(
        "push_redelivered",
        account_id=account_id,
        pushes=len(attempts),
        sent=sum(1 for a in attempts if a.outcome is not None and a.outcome.success),
    )


def _refused(error: Error) -> Outcome:
    return Outcome(False, None, 0, error.code, error.message)


def _stored(
    contact: StoredContact, values: dict[str, WaitingValue]
) -> dict[str, tuple[datetime, bool] | None]:
    """Returns, per waiting CRM field, the time and CRM origin of the value the store holds now."""
    times: dict[str, tuple[datetime, bool] | None] = {}
    for name, value in values.items():
        meta: FieldMeta | None = contact.view([value.field]).meta.get(value.field) if value.field else None
        times[name] = (meta.at, meta.from_crm) if meta is not None else None
    return times


def _plan(a: _Attempt, contact: StoredContact) -> None:
    values = dict(a.push.values)
    keep, a.dropped = superseded(values, _stored(contact, values))
    if not keep:
        return
    crm_id = a.push.crm_id or contact.external_id
    operation = "update" if crm_id else a.push.operation
    a.created = operation == "create"
    a.write = PlannedWrite(
        contact_id=a.push.contact_id,
        operation=operation,
        crm_object=contact.crm_object if crm_id and contact.crm_object else a.push.crm_object,
        crm_id=crm_id,
        values={n: v.value for n, v in keep.items()},
        email_lower=a.push.email_lower,
        event_ids=list(a.push.event_ids),
        origins=keep,
    )


async def _send(
    ctx: PushContext, connection: CrmConnectionInfo, mapping: Mapping, attempts: Sequence[_Attempt]
) -> None:
    if not attempts:
        return
    if any(a.push.last_error_code == BUDGET for a in attempts):
        try:
            # Both: event pushes meet the same budget through the other connector.
            for crm in {id(c): c for c in (ctx.crm, ctx.resend_crm)}.values():
                await crm.recheck_budget(connection)
        except CrmError as exc:
            # Still unreadable: the writes below are parked or fail transiently, and wait again.
            log.warning("crm_budget_unreadable", account_id=connection.account_id, error=exc.message)
    await _find_created(ctx, connection, mapping, [a for a in attempts if a.created])
    await _drop_changed_in_crm(ctx, connection, [a for a in attempts if a.outcome is None and not a.created])
    todo = [a for a in attempts if a.outcome is None and a.write is not None]
    outcomes = await ctx.resend_crm.write(
        connection, [a.write for a in todo if a.write is not None], mapping=mapping
    )
    for a, outcome in zip(todo, outcomes, strict=True):
        a.outcome = outcome


async def _find_created(
    ctx: PushContext, connection: CrmConnectionInfo, mapping: Mapping, creates: Sequence[_Attempt]
) -> None:
    """A create an earlier attempt may have made is looked up: found, it becomes an update of that record."""
    by_object: dict[str, list[_Attempt]] = {}
    for a in creates:
        if a.write is not None and a.write.email_lower:
            by_object.setdefault(a.write.crm_object, []).append(a)
    for crm_object, group in by_object.items():
        since = min(a.push.created_at or utc_now() for a in group)
        try:
            found = await ctx.resend_crm.find_created(
                connection,
                mapping=mapping,
                crm_object=crm_object,
                emails_lower={a.write.email_lower for a in group if a.write and a.write.email_lower},
                since=since,
            )
        except CrmError as exc:
            for a in group:
                a.outcome = Outcome(
                    False, None, 1, exc.error_code or "TRANSIENT", exc.message, retryable=True
                )
            continue
        for a in group:
            assert a.write is not None
            crm_id = found.get(a.write.email_lower or "")
            if crm_id is not None:
                a.write = replace(a.write, operation="update", crm_id=crm_id)


async def _drop_changed_in_crm(
    ctx: PushContext, connection: CrmConnectionInfo, updates: Sequence[_Attempt]
) -> None:
    """Reads the records just before the re-send: a field the CRM changed later is dropped (R13).

    The store learns of a CRM change only at the next pull, which may come after
    the CRM is back; one read per object and round keeps a user's later edit.
    """
    by_object: dict[str, list[_Attempt]] = {}
    for a in updates:
        if a.write is not None and a.write.crm_id:
            by_object.setdefault(a.write.crm_object, []).append(a)
    if not by_object:
        return
    roles = ctx.resend_crm.roles(connection)
    for crm_object, group in by_object.items():
        fields = sorted({roles.id, roles.modified_at, *(n for a in group if a.write for n in a.write.values)})
        try:
            records = await ctx.resend_crm.read(
                connection,
                crm_object=crm_object,
                ids=[a.write.crm_id for a in group if a.write],
                fields=fields,
            )
        except (CrmTransientError, CrmBudgetExhausted) as exc:
            for a in group:
                a.outcome = _unread(exc)
            continue
        except CrmError as exc:
            # A refused read must not fail the push: it goes, as it would have without the check.
            log.warning("crm_read_before_resend_refused", crm_object=crm_object, error=exc.message)
            continue
        for a in group:
            assert a.write is not None
            record = records.get(a.write.crm_id or "")
            if record is None:
                continue  # deleted: the write says so (ENTITY_IS_DELETED)
            for name in changed_in_crm(
                a.write.origins, record, modstamp=_stamp(record.get(roles.modified_at))
            ):
                a.dropped[name] = SUPERSEDED_BY_CRM
                del a.write.values[name]
                del a.write.origins[name]
            if not a.write.values:
                a.write = None


def _unread(exc: CrmTransientError | CrmBudgetExhausted) -> Outcome:
    """Returns the outcome of a re-send whose records could not be read first: it waits again."""
    if isinstance(exc, CrmBudgetExhausted):
        return Outcome(False, None, 1, exc.error_code, exc.message, parked=True)
    return Outcome(False, None, 1, exc.error_code or "TRANSIENT", exc.message, retryable=True)


def _stamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


async def _settle(ctx: PushContext, account_id: str, attempts: Sequence[_Attempt]) -> None:
    """Records each attempt's answer on its push, its events' entries and its contact."""
    now = utc_now()

    async def attempt() -> None:
        async with ctx.store.begin() as tx:
            ids = tuple(dict.fromkeys(a.push.contact_id for a in attempts))
            await tx.contacts.find(account_id, ContactRefs(ids=ids))  # the contacts first, then their pushes
            current = await tx.deliveries.locked([a.push.id for a in attempts if a.push.id is not None])
            saves: list[WaitingPush] = []
            results: list[PushResult] = []
            created: list[CreatedRecord] = []
            for a in attempts:
                now_push = current.get(a.push.id or -1)
                if now_push is None:
                    continue  # removed meanwhile (an operator)
                push, rs, made = _settled(ctx, a, now_push, now=now)
                saves.append(push)
                results += rs
                created += made
            await tx.deliveries.save(saves, now=now)
            await tx.push_log.finish(results)
            await tx.contacts.link_created(created, now=now)

    await ctx.store.retry_if_connection_lost(attempt, step="push_redelivery_settle_retried")


def _settled(
    ctx: PushContext, a: _Attempt, push: WaitingPush, *, now: datetime
) -> tuple[WaitingPush, list[PushResult], list[CreatedRecord]]:
    """Returns the push after the attempt, its events' results and the record it created."""
    outcome = a.outcome
    if outcome is not None and outcome.waits:
        after = after_outcome(ctx, push, outcome, now=now)
        if after.state == GIVEN_UP:
            return after, gave_up_results([after], at=now), []
        waiting = _results(a, push.event_ids, WAITING, outcome, now=now)
        return after, waiting, []
    if outcome is not None and not outcome.success:
        failed = replace(
            push, state=GIVEN_UP, last_error_code=outcome.error_code, last_error_message=outcome.error_message
        )
        return failed, _results(a, push.event_ids, FAILED, outcome, now=now), []
    # Sent, or nothing left to send: what joined meanwhile stays, to go next.
    left = push.without(a.push.values, a.push.event_ids)
    crm_id = outcome.crm_id if outcome is not None else None
    made: list[CreatedRecord] = []
    if a.created and a.write is not None and crm_id:
        made = [CreatedRecord(push.contact_id, a.write.crm_object, crm_id)]
    if left.values:
        left = replace(
            left,
            operation="update" if (crm_id or push.crm_id) else push.operation,
            crm_id=crm_id or push.crm_id,
            failures=0,
            first_failed_at=None,
            next_attempt_at=now,
        )
    status = SUCCEEDED if outcome is not None else SKIPPED
    return left, _results(a, a.push.event_ids, status, outcome, now=now), made


def _results(
    a: _Attempt, event_ids: Sequence[str], status: str, outcome: Outcome | None, *, now: datetime
) -> list[PushResult]:
    dropped_by_event: dict[str, dict[str, str]] = {}
    for name, why in a.dropped.items():
        value = a.push.values[name]
        dropped_by_event.setdefault(value.event_id, {})[value.field or name] = why
    return [
        PushResult(
            account_id=a.push.account_id,
            event_id=event_id,
            status=status,
            crm_id=(outcome.crm_id if outcome else None) or a.push.crm_id,
            attempts=outcome.attempts if outcome else 0,
            at=now,
            error_code=outcome.error_code if outcome and not outcome.success else None,
            error_message=outcome.error_message if outcome and not outcome.success else None,
            decisions=dropped_by_event.get(event_id, {}),
        )
        for event_id in event_ids
    ]
