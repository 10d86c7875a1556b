"""Reconciling `pending` entries: events whose CRM write may or may not have happened
before the process stopped.

Creates: the CRM is searched for a record with the contact's e-mail changed
since the entry was written; if found, that is the created record, else it is
created now. Updates: the record is read back; if it already holds the
intended values nothing is sent, else the values are sent again (updates are
idempotent by value). Either way the CRM sees one effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.domain.mapping import CrmObject
from crmsync.common.domain.push_log import LoggedEntry
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.handlers.ports import AccountConfiguration, ContactRefs, StoredContact
from crmsync.pusher.handlers.record import NO_CONNECTION, Error, record, record_all_failed
from crmsync.pusher.values import Outcome, PlannedWrite

log = structlog.get_logger(__name__)

CONTACT_GONE = Error("CONTACT_GONE", "the contact no longer exists")


class _Reconciliation:
    """What the pending entries of one account come to: writes still to send, and answers known already."""

    def __init__(self, contacts: dict[uuid.UUID, StoredContact]) -> None:
        self.contacts = contacts
        self.writes: dict[uuid.UUID, PlannedWrite] = {}
        self.done: list[tuple[PlannedWrite, Outcome]] = []

    def settle(self, write: PlannedWrite, outcome: Outcome) -> None:
        self.done.append((write, outcome))

    def created_id(self, contact_id: uuid.UUID) -> str | None:
        for write, outcome in self.done:
            if write.contact_id == contact_id and write.operation == "create" and outcome.success:
                return outcome.crm_id
        return None


async def reconcile(ctx: PushContext, account_id: str, pending: list[LoggedEntry]) -> None:
    """Finishes events whose CRM write may or may not have happened before a crash."""
    config, contacts = await _read(ctx, account_id, pending)
    if config.connection is None:
        await record_all_failed(ctx.store, pending, error=NO_CONNECTION)
        return
    connection = config.connection
    entries = sorted(pending, key=lambda p: p.id)
    plan = _Reconciliation(contacts)
    await _settle_creates(ctx, config, plan, entries)
    _plan_updates(plan, entries)
    await _settle_updates_already_applied(ctx, connection, plan)
    remaining = list(plan.writes.values())
    outcomes = await ctx.crm.write(connection, remaining, mapping=config.mapping) if remaining else []
    await record(
        ctx,
        account_id=account_id,
        writes=[w for w, _ in plan.done] + remaining,
        outcomes=[o for _, o in plan.done] + list(outcomes),
    )
    orphans = [p for p in entries if p.contact_id not in contacts]
    if orphans:
        await record_all_failed(ctx.store, orphans, error=CONTACT_GONE)
    log.info("push_reconciled", account_id=account_id, entries=len(pending), resent=len(remaining))


async def _read(
    ctx: PushContext, account_id: str, pending: Sequence[LoggedEntry]
) -> tuple[AccountConfiguration, dict[uuid.UUID, StoredContact]]:
    async with ctx.store.read() as tx:
        config = await tx.accounts.config(account_id, cached=False)
        ids = tuple(p.contact_id for p in pending if p.contact_id is not None)
        found = await tx.contacts.find(account_id, ContactRefs(ids=ids))
    return config, {c.id: c for c in found}


async def _settle_creates(
    ctx: PushContext, config: AccountConfiguration, plan: _Reconciliation, entries: Sequence[LoggedEntry]
) -> None:
    """A create found in the CRM (or a contact linked since) is done; the others are to be sent."""
    assert config.connection is not None
    by_object: dict[str, list[LoggedEntry]] = {}
    for p in entries:
        if p.operation == "create" and p.contact_id in plan.contacts:
            by_object.setdefault(p.crm_object or CrmObject.LEAD, []).append(p)
    for crm_object, creates in by_object.items():
        emails = {(plan.contacts[p.contact_id].email or "").lower() for p in creates if p.contact_id} - {""}
        found = await ctx.crm.find_created(
            config.connection,
            mapping=config.mapping,
            crm_object=crm_object,
            emails_lower=emails,
            since=min(p.created_at for p in creates),
        )
        for p in creates:
            assert p.contact_id is not None
            contact = plan.contacts[p.contact_id]
            write = PlannedWrite(
                p.contact_id,
                "create",
                crm_object,
                None,
                dict(p.sent_fields),
                contact.email_lower,
                [p.event_id],
            )
            crm_id = contact.external_id or found.get(write.email_lower or "")
            if crm_id is not None:
                plan.settle(write, Outcome(True, crm_id, 1))
            else:
                plan.writes[p.contact_id] = write


def _plan_updates(plan: _Reconciliation, entries: Sequence[LoggedEntry]) -> None:
    """Updates are sent again, folded into a write of their contact already planned."""
    for p in entries:
        if p.operation != "update" or p.contact_id not in plan.contacts:
            continue
        assert p.contact_id is not None
        contact = plan.contacts[p.contact_id]
        if p.contact_id in plan.writes:
            plan.writes[p.contact_id].fold(dict(p.sent_fields), p.event_id)
            continue
        crm_id = p.crm_id or contact.external_id or plan.created_id(p.contact_id)
        write = PlannedWrite(
            p.contact_id,
            "update",
            p.crm_object or contact.crm_object or CrmObject.LEAD,
            crm_id,
            dict(p.sent_fields),
            None,
            [p.event_id],
        )
        if crm_id is None:
            plan.settle(write, Outcome(False, None, 1, "NOT_CREATED", "the record was never created"))
        else:
            plan.writes[p.contact_id] = write


async def _settle_updates_already_applied(
    ctx: PushContext, connection: CrmConnectionInfo, plan: _Reconciliation
) -> None:
    """An update whose record already holds its values is done; one whose record is gone has failed."""
    updates = [w for w in plan.writes.values() if w.operation == "update"]
    for crm_object in {w.crm_object for w in updates}:
        same = [w for w in updates if w.crm_object == crm_object]
        current = await ctx.crm.read(
            connection,
            crm_object=crm_object,
            ids=[w.crm_id for w in same if w.crm_id],
            fields=sorted({k for w in same for k in w.values}),
        )
        for w in same:
            record = current.get(w.crm_id or "")
            if record is None:
                plan.settle(
                    w, Outcome(False, w.crm_id, 1, "ENTITY_IS_DELETED", "the record no longer exists")
                )
                del plan.writes[w.contact_id]
            elif all(record.get(k) == v for k, v in w.values.items()):
                plan.settle(w, Outcome(True, w.crm_id, 1))
                del plan.writes[w.contact_id]
