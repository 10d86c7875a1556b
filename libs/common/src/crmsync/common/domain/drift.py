"""Drift: local values the CRM should hold and does not (pure, R25).

A value drifts when it was changed in the platform (its origin is not the CRM),
after the CRM's version the last pull saw (`crm_modstamp`), on a contact with a
CRM record, in a field mapped on that record's object that may be pushed
(effective Allow Push, R8), and the CRM still does not hold it: read again, the
record is no newer than the local change and its value differs. A value of CRM
origin never drifts, so a repair never echoes (R12). A record the CRM changed
after the local value is not drift either: by R13 the CRM's version wins and the
next pull takes it.

`candidates` says which fields of a stored contact may drift (no CRM read
needed); `find_drift` decides with the CRM's current record; `repair_plan`
groups what drifted into the contact-change events and outbound flags that
repair it, each event with an id derived from what it repairs, so a repeated
pass produces the same ids and the pusher applies each once (R18).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.common.domain.contacts import ContactValues
from crmsync.common.domain.fields import RELATED_OBJECT_FIELDS
from crmsync.common.domain.mapping import Mapping as FieldMapping
from crmsync.common.domain.mapping import PushPolicy, effective_allow_push
from crmsync.common.domain.push import is_scheduled_field

# Namespace of repair event ids (uuid5): the same repair always gets the same id.
_REPAIR_IDS = uuid.UUID("5d1c9f3e-2b7a-4e0c-9a51-7c0f3b8e6d21")


@dataclass(frozen=True)
class StoredForRepair:
    """A contact with a CRM record, as a repair pass reads it."""

    id: uuid.UUID
    crm_object: str
    external_id: str
    email: str | None
    values: ContactValues
    crm_modstamp: datetime | None


@dataclass(frozen=True)
class CrmVersion:
    """The CRM's record as read now: its destination values and modified time."""

    values: Mapping[str, Any]
    modstamp: datetime


@dataclass(frozen=True)
class Drift:
    """One local value the CRM does not hold."""

    contact_id: uuid.UUID
    field: str
    local_value: Any
    local_at: datetime
    origin: str
    crm_value: Any
    crm_at: datetime
    scheduled: bool  # a score or the opt-out: the outbound job sends it (R11)


@dataclass(frozen=True)
class RepairEvent:
    """Local values of one contact, one origin and one time, to hand to the pusher again."""

    event_id: str
    contact_id: uuid.UUID
    email: str | None
    origin: str
    occurred_at: datetime
    changes: Mapping[str, Any]
    # What the store holds meanwhile: the CRM's value and time, per field.
    crm_values: Mapping[str, tuple[Any, datetime]]


@dataclass(frozen=True)
class RepairPlan:
    events: tuple[RepairEvent, ...]
    # Contacts whose scores or opt-out drifted: flagged for the outbound job.
    outbound: tuple[uuid.UUID, ...]
    found: int


def candidates(
    contact: StoredForRepair, *, mapping: FieldMapping, policy: PushPolicy, origins: frozenset[str]
) -> tuple[str, ...]:
    """Returns the contact's fields whose local value is newer than the CRM version last pulled.

    Only values whose origin is one of `origins` (the sources an event may carry) are taken.
    """
    found: list[str] = []
    for name, meta in contact.values.meta.items():
        if meta.from_crm or meta.origin not in origins or name not in contact.values.fields:
            continue
        if contact.crm_modstamp is not None and meta.at <= contact.crm_modstamp:
            continue
        row = mapping.row(name)
        if row is None or name in RELATED_OBJECT_FIELDS or row.source_for(contact.crm_object) is None:
            continue
        if effective_allow_push(row, policy):
            found.append(name)
    return tuple(sorted(found))


def find_drift(
    contact: StoredForRepair, fields: Iterable[str], crm: CrmVersion | None, *, mapping: FieldMapping
) -> list[Drift]:
    """Returns the candidate fields the CRM's current record does not hold (none if it is gone)."""
    if crm is None:
        return []  # deleted in the CRM: the next sync removes the contact (R16)
    drifted: list[Drift] = []
    for name in fields:
        meta = contact.values.meta[name]
        local = contact.values.fields.get(name)
        if crm.modstamp >= meta.at or name not in crm.values or crm.values[name] == local:
            continue
        row = mapping.row(name)
        assert row is not None
        drifted.append(
            Drift(
                contact_id=contact.id,
                field=name,
                local_value=local,
                local_at=meta.at,
                origin=meta.origin,
                crm_value=crm.values[name],
                crm_at=crm.modstamp,
                scheduled=is_scheduled_field(row),
            )
        )
    return drifted


def repair_event_id(
    account_id: str, contact_id: uuid.UUID, origin: str, at: datetime, fields: Iterable[str]
) -> str:
    """Returns the id of the event that repairs these fields, the same for every pass."""
    name = f"{account_id}:{contact_id}:{origin}:{at.isoformat()}:{','.join(sorted(fields))}"
    return f"repair-{uuid.uuid5(_REPAIR_IDS, name)}"


def repair_plan(account_id: str, contact: StoredForRepair, drifted: Iterable[Drift]) -> RepairPlan:
    """Returns the events and outbound flags that repair one contact's drift."""
    groups: dict[tuple[str, datetime], list[Drift]] = {}
    outbound = False
    found = 0
    for drift in drifted:
        found += 1
        if drift.scheduled:
            outbound = True
        else:
            groups.setdefault((drift.origin, drift.local_at), []).append(drift)
    events = tuple(
        RepairEvent(
            event_id=repair_event_id(account_id, contact.id, origin, at, [d.field for d in group]),
            contact_id=contact.id,
            email=contact.email,
            origin=origin,
            occurred_at=at,
            changes={d.field: d.local_value for d in group},
            crm_values={d.field: (d.crm_value, d.crm_at) for d in group},
        )
        for (origin, at), group in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0]))
    )
    return RepairPlan(events, (contact.id,) if outbound else (), found)
