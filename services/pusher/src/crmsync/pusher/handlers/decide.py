"""Deciding what one event does: its merge into the contact, the CRM write it calls for
(`decide_push`), and its push log entry."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from crmsync.common.domain.contacts import Merge, merge_local_changes
from crmsync.common.domain.fields import EMAIL
from crmsync.common.domain.push import ContactState, PushDecision, decide_push, to_crm_value
from crmsync.common.domain.push_log import FAILED, PENDING, SKIPPED, PushLogEntry
from crmsync.common.domain.redelivery import WaitingValue, waiting_values
from crmsync.common.messages import ContactChanged
from crmsync.pusher.handlers.hold import contact_fields
from crmsync.pusher.handlers.ports import AccountConfiguration, StoredContact
from crmsync.pusher.handlers.record import NO_CONNECTION, event_entry
from crmsync.pusher.handlers.validate import VALUE_TOO_LONG, FieldLengths, length_problem
from crmsync.pusher.values import PlannedWrite

# The external id of a contact whose record is being created in this batch.
BEING_CREATED = "(being created)"


class Planner:
    """One account's planned CRM writes in a batch: one per contact, its events folded in order."""

    def __init__(self) -> None:
        self._writes: dict[uuid.UUID, PlannedWrite] = {}

    @property
    def writes(self) -> list[PlannedWrite]:
        return list(self._writes.values())

    def state_of(self, contact: StoredContact, event: ContactChanged) -> ContactState:
        """Returns the contact as `decide_push` sees it: a record being created counts as one."""
        before = contact.view(event.changes)
        planned = self._writes.get(contact.id)
        if planned is not None and planned.operation == "create":
            return ContactState(planned.crm_object, BEING_CREATED, before)
        return ContactState(contact.crm_object, contact.external_id, before)

    def plan(
        self,
        contact: StoredContact,
        decision: PushDecision,
        crm_id: str | None,
        event_id: str,
        origins: dict[str, WaitingValue],
    ) -> None:
        existing = self._writes.get(contact.id)
        if existing is not None:
            existing.fold(decision.values, event_id, origins)
            return
        assert decision.crm_object is not None
        self._writes[contact.id] = PlannedWrite(
            contact_id=contact.id,
            operation=decision.operation.value,
            crm_object=decision.crm_object,
            crm_id=crm_id,
            values=dict(decision.values),
            email_lower=contact.email_lower,
            event_ids=[event_id],
            origins=dict(origins),
        )

    def drop(self, contact_ids: set[uuid.UUID]) -> None:
        """Forgets the writes of these contacts (they joined their waiting pushes)."""
        for contact_id in contact_ids:
            self._writes.pop(contact_id, None)


def decide_event(
    config: AccountConfiguration,
    contact: StoredContact,
    event: ContactChanged,
    planner: Planner,
    *,
    lengths: FieldLengths | None = None,
) -> PushLogEntry:
    """Merges the event into the contact, plans its CRM write; returns its push log entry.

    A value longer than its CRM field holds is kept locally; the push fails for
    good without a CRM call (R22).
    """
    state = planner.state_of(contact, event)
    merge = merge_local_changes(
        state.values, event.changes, source=event.source.value, occurred_at=event.occurred_at
    )
    decision = decide_push(
        mapping=config.mapping,
        policy=config.policy,
        contact=state,
        changes=event.changes,
        merge=merge,
        crm_create=event.crm_create.object if event.crm_create else None,
    )
    _take_merge(contact, event, merge, decision)
    crm_id = None if decision.crm_id == BEING_CREATED else decision.crm_id
    entry = event_entry(
        event,
        contact_id=contact.id,
        status=SKIPPED,
        operation=decision.operation.value,
        crm_object=decision.crm_object,
        crm_id=crm_id,
        sent_fields=decision.values,
        decisions={k: v.value for k, v in decision.reasons.items()},
    )
    if decision.sends and config.connection is None:
        return replace(
            entry, status=FAILED, error_code=NO_CONNECTION.code, error_message=NO_CONNECTION.message
        )
    too_long = decision.sends and length_problem(
        config.mapping, decision.crm_object or "", decision.values, lengths or {}
    )
    if too_long:
        return replace(entry, status=FAILED, error_code=VALUE_TOO_LONG, error_message=too_long)
    if decision.sends:
        assert decision.crm_object is not None
        fields = contact_fields(config.mapping, decision.crm_object)
        origins = waiting_values(
            decision.values,
            fields=fields,
            occurred_at=event.occurred_at,
            event_id=event.event_id,
            priors=_crm_priors(config, state, fields, decision.values) if state.in_crm else None,
        )
        planner.plan(contact, decision, crm_id, event.event_id, origins)
        return replace(entry, status=PENDING)
    return entry


def _crm_priors(
    config: AccountConfiguration, state: ContactState, fields: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """Returns, per CRM field sent, the value the store held before the event, as the CRM takes it."""
    priors: dict[str, Any] = {}
    for name in values:
        row = config.mapping.row(fields.get(name, ""))
        if row is not None:
            priors[name] = to_crm_value(row, state.values.fields.get(row.destination))
    return priors


def _take_merge(contact: StoredContact, event: ContactChanged, merge: Merge, decision: PushDecision) -> None:
    contact.apply(merge.values, event.changes)
    new_email = merge.values.fields.get(EMAIL)
    if EMAIL in merge.changed and isinstance(new_email, str):
        contact.email = new_email
    if decision.deferred:
        contact.outbound_pending = True
