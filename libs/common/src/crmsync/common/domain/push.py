"""What the CRM gets when a contact changes, and what the outbound job sends (pure).

`decide_push` turns (mapping, push policy, contact, the event's changes and
their merge) into one CRM write or none, with the reason each field was or
was not sent. `decide_outbound` does the same for the scheduled scores and
opt-outs. Nothing here deletes anything in the CRM (R10): the only operations
are create, update and none.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crmsync.common.domain.contacts import ContactValues, Merge
from crmsync.common.domain.fields import OPTED_OUT, DataType
from crmsync.common.domain.mapping import Mapping, MappingRow, PushPolicy, effective_allow_push


class Operation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NONE = "none"


class Reason(StrEnum):
    """Why a destination field was or was not sent to the CRM."""

    SENT = "sent"
    NOT_MAPPED = "not_mapped"  # no mapping row (R1)
    NO_SOURCE = "no_source"  # mapped, but no source field on this CRM object (R1)
    ALLOW_PUSH_OFF = "allow_push_off"  # R8
    FROM_CRM = "from_crm"  # the value came from the CRM: no echo (R12)
    CRM_NEWER = "crm_newer"  # the CRM's value is newer or tied (R13)
    SUPERSEDED = "superseded"  # a newer local value is already stored (R13)
    UNCHANGED = "unchanged"  # the stored value is already this one
    DEFERRED = "deferred"  # a score or opt-out: sent by the outbound job (R11)
    NO_CRM_RECORD = "no_crm_record"  # no CRM record and no crm_create (R9)


@dataclass(frozen=True)
class ContactState:
    """A contact as the pusher sees it before an event: its CRM link and values."""

    crm_object: str | None = None
    external_id: str | None = None
    values: ContactValues = field(default_factory=ContactValues)

    @property
    def in_crm(self) -> bool:
        return self.crm_object is not None and self.external_id is not None


@dataclass(frozen=True)
class PushDecision:
    """One CRM write (or none) for one event."""

    operation: Operation
    crm_object: str | None
    crm_id: str | None
    values: dict[str, Any]  # CRM field name -> value to send
    deferred: tuple[str, ...]  # destinations left for the outbound job (R11)
    reasons: dict[str, Reason]  # destination -> why it was or was not sent

    @property
    def sends(self) -> bool:
        return self.operation is not Operation.NONE


@dataclass(frozen=True)
class OutboundDecision:
    """The scores and opt-outs one contact's CRM record gets from the outbound job."""

    values: dict[str, Any]  # CRM field name -> value
    reasons: dict[str, Reason]

    @property
    def sends(self) -> bool:
        return bool(self.values)


def is_scheduled_field(row: MappingRow) -> bool:
    """Returns whether a field waits for the outbound job: scores and the opt-out (R11)."""
    return row.data_type == DataType.SCORE or row.destination == OPTED_OUT


def to_crm_value(row: MappingRow, value: Any) -> Any:
    """Returns the value as the CRM takes it (multi-text becomes a ';'-separated picklist)."""
    if row.data_type == DataType.MULTI_TEXT and isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return value


def decide_push(
    *,
    mapping: Mapping,
    policy: PushPolicy,
    contact: ContactState,
    changes: AnyMapping[str, Any],
    merge: Merge,
    crm_create: str | None = None,
) -> PushDecision:
    """Returns what the CRM gets for an event whose `changes` were merged into `contact` as `merge`.

    An existing CRM record is updated with the changed fields that are mapped
    on its object, may be pushed (R8), did not come from the CRM (R12) and
    are not older than the CRM's value (R13); scores and opt-outs wait for the
    outbound job (R11). Without a CRM record, a record is created only when
    the event asks (`crm_create`, R9), filled with every mapped field that
    has a source on that object, whatever its Allow Push.
    """
    if contact.in_crm:
        return _update(mapping=mapping, policy=policy, contact=contact, changes=changes, merge=merge)
    if crm_create is not None:
        return _create(mapping=mapping, changes=changes, merge=merge, crm_object=crm_create)
    reasons = {
        name: Reason.NOT_MAPPED if mapping.row(name) is None else Reason.NO_CRM_RECORD for name in changes
    }
    return PushDecision(Operation.NONE, None, None, {}, (), reasons)


def _update(
    *,
    mapping: Mapping,
    policy: PushPolicy,
    contact: ContactState,
    changes: AnyMapping[str, Any],
    merge: Merge,
) -> PushDecision:
    crm_object = contact.crm_object
    assert crm_object is not None
    kept = set(merge.kept_local)
    changed = set(merge.changed)
    values: dict[str, Any] = {}
    deferred: list[str] = []
    reasons: dict[str, Reason] = {}
    for name in changes:
        row = mapping.row(name)
        reason = _update_reason(
            row=row,
            name=name,
            crm_object=crm_object,
            policy=policy,
            before=contact.values,
            after=merge.values,
            kept=name in kept,
            changed=name in changed,
        )
        reasons[name] = reason
        if reason is Reason.DEFERRED:
            deferred.append(name)
        elif reason is Reason.SENT:
            assert row is not None
            source = row.source_for(crm_object)
            assert source is not None
            values[source] = to_crm_value(row, merge.values.fields.get(name))
    operation = Operation.UPDATE if values else Operation.NONE
    return PushDecision(operation, crm_object, contact.external_id, values, tuple(deferred), reasons)


def _update_reason(
    *,
    row: MappingRow | None,
    name: str,
    crm_object: str,
    policy: PushPolicy,
    before: ContactValues,
    after: ContactValues,
    kept: bool,
    changed: bool,
) -> Reason:
    if row is None:
        return Reason.NOT_MAPPED
    if row.source_for(crm_object) is None:
        return Reason.NO_SOURCE
    if not effective_allow_push(row, policy):
        return Reason.ALLOW_PUSH_OFF
    if kept:
        stored = after.meta.get(name)
        return Reason.CRM_NEWER if stored is not None and stored.from_crm else Reason.SUPERSEDED
    previous = before.meta.get(name)
    if previous is not None and previous.from_crm and before.fields.get(name) == after.fields.get(name):
        # The CRM already holds exactly this value: sending it back would be an echo.
        return Reason.FROM_CRM
    now = after.meta.get(name)
    if now is not None and now.from_crm:
        return Reason.FROM_CRM
    if not changed:
        return Reason.UNCHANGED
    if is_scheduled_field(row):
        return Reason.DEFERRED
    return Reason.SENT


def _create(
    *, mapping: Mapping, changes: AnyMapping[str, Any], merge: Merge, crm_object: str
) -> PushDecision:
    fields = merge.values.fields
    values: dict[str, Any] = {}
    reasons: dict[str, Reason] = {}
    for row in mapping.rows:
        source = row.source_for(crm_object)
        if source is None:
            if row.destination in changes or row.destination in fields:
                reasons[row.destination] = Reason.NO_SOURCE
            continue
        value = fields.get(row.destination)
        if value is None:
            continue
        values[source] = to_crm_value(row, value)
        reasons[row.destination] = Reason.SENT
    for name in _unmapped(mapping, [*changes, *fields]):
        reasons[name] = Reason.NOT_MAPPED
    operation = Operation.CREATE if values else Operation.NONE
    return PushDecision(operation, crm_object, None, values, (), reasons)


def _unmapped(mapping: Mapping, names: Iterable[str]) -> list[str]:
    return [name for name in dict.fromkeys(names) if mapping.row(name) is None]


def decide_outbound(*, mapping: Mapping, policy: PushPolicy, contact: ContactState) -> OutboundDecision:
    """Returns the scores and opt-out the outbound job sends for one contact (R11).

    Scores go whenever mapped on the record's object; the opt-out follows its
    Allow Push like any other field (R8). Values that came from the CRM are
    not sent back (R12); nothing goes to a contact without a CRM record.
    """
    if not contact.in_crm:
        return OutboundDecision({}, {})
    crm_object = contact.crm_object
    assert crm_object is not None
    values: dict[str, Any] = {}
    reasons: dict[str, Reason] = {}
    for row in mapping.rows:
        if not is_scheduled_field(row) or row.destination not in contact.values.fields:
            continue
        source = row.source_for(crm_object)
        stored = contact.values.meta.get(row.destination)
        if source is None:
            reasons[row.destination] = Reason.NO_SOURCE
        elif not effective_allow_push(row, policy):
            reasons[row.destination] = Reason.ALLOW_PUSH_OFF
        elif stored is None or stored.from_crm:
            reasons[row.destination] = Reason.FROM_CRM
        else:
            values[source] = to_crm_value(row, contact.values.fields[row.destination])
            reasons[row.destination] = Reason.SENT
    return OutboundDecision(values, reasons)


def fold_writes(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Returns one payload for two writes of the same record, the later values winning.

    Events of one contact in one batch become one CRM write, so they stay in
    order and a record never appears twice in a composite request.
    """
    return {**earlier, **later}
