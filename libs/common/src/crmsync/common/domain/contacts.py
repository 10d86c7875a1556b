"""How values meet in the contact store: per-field origin and time (pure).

Every field value carries where it came from (`crm`, or the event source such
as `form`) and when (the CRM's modified time, or the event's occurred_at).
That is what stops echoes (R12), resolves conflicts per field (R13) and keeps
opt-outs one-way safe (R23).

Stored, a field without a metadata entry holds the CRM's value as of the
row's `crm_modstamp`: that is every field of a freshly pulled record, so the
entries kept are the few that differ (a local edit, a value kept through a
later pull). `ContactValues.from_stored` and `stored_meta` convert, losslessly
as long as every field has metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.common.domain.fields import OPTED_OUT

CRM_ORIGIN = "crm"


@dataclass(frozen=True)
class FieldMeta:
    origin: str
    at: datetime

    @property
    def from_crm(self) -> bool:
        return self.origin == CRM_ORIGIN

    def to_json(self) -> dict[str, str]:
        return {"origin": self.origin, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> FieldMeta:
        return cls(origin=raw["origin"], at=datetime.fromisoformat(raw["at"]))


@dataclass(frozen=True)
class ContactValues:
    """A contact's field values and, per field, their origin and time."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, FieldMeta] = field(default_factory=dict)

    @classmethod
    def from_stored(
        cls, fields: Mapping[str, Any], meta: Mapping[str, Mapping[str, str]], crm_modstamp: datetime | None
    ) -> ContactValues:
        """Reads a stored row: a field without an entry is the CRM's, as of `crm_modstamp`."""
        return cls(
            dict(fields),
            {n: m for n in {*fields, *meta} if (m := stored_field_meta(n, fields, meta, crm_modstamp))},
        )

    def stored_meta(self, crm_modstamp: datetime | None) -> dict[str, dict[str, str]]:
        """Returns the metadata to store beside `crm_modstamp`: the entries it does not imply."""
        return {
            name: meta.to_json()
            for name, meta in self.meta.items()
            if not (name in self.fields and is_implied(meta, crm_modstamp))
        }


def is_implied(meta: FieldMeta, crm_modstamp: datetime | None) -> bool:
    """True when a stored row with this `crm_modstamp` needs no entry for a field with `meta`."""
    return crm_modstamp is not None and meta.from_crm and meta.at == crm_modstamp


def stored_field_meta(
    name: str, fields: Mapping[str, Any], meta: Mapping[str, Mapping[str, str]], crm_modstamp: datetime | None
) -> FieldMeta | None:
    """Returns one field's origin and time as a stored row gives them (see the module's note)."""
    raw = meta.get(name)
    if raw is not None:
        return FieldMeta.from_json(raw)
    if name in fields and crm_modstamp is not None:
        return FieldMeta(CRM_ORIGIN, crm_modstamp)
    return None


@dataclass(frozen=True)
class Conflict:
    """Both sides changed a field; logged with both values (R13)."""

    field: str
    local_value: Any
    local_at: datetime
    crm_value: Any
    crm_at: datetime
    winner: str  # "crm" or "local"


@dataclass(frozen=True)
class Merge:
    values: ContactValues
    changed: tuple[str, ...]
    kept_local: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def merge_from_crm(current: ContactValues, incoming: Mapping[str, Any], *, modstamp: datetime) -> Merge:
    """Returns the contact after values pulled from the CRM at `modstamp` are applied.

    Per field: a value of CRM origin is replaced; a local value newer than the
    CRM record is kept (R13, the pusher sends it); on a tie the CRM wins. A CRM
    opt-in never clears a local opt-out (R23).
    """
    fields = dict(current.fields)
    meta = dict(current.meta)
    changed: list[str] = []
    kept: list[str] = []
    conflicts: list[Conflict] = []
    for name, value in incoming.items():
        old = meta.get(name)
        old_value = fields.get(name)
        if name == OPTED_OUT and old_value is True and value is not True:
            kept.append(name)
            continue
        if old is not None and not old.from_crm and old.at > modstamp:
            kept.append(name)
            if old_value != value:
                conflicts.append(Conflict(name, old_value, old.at, value, modstamp, winner="local"))
            continue
        if old is not None and not old.from_crm and old_value != value:
            conflicts.append(Conflict(name, old_value, old.at, value, modstamp, winner="crm"))
        if old_value != value or name not in fields:
            changed.append(name)
        fields[name] = value
        meta[name] = FieldMeta(CRM_ORIGIN, modstamp)
    return Merge(ContactValues(fields, meta), tuple(changed), tuple(kept), tuple(conflicts))


def merge_local_changes(
    current: ContactValues, changes: Mapping[str, Any], *, source: str, occurred_at: datetime
) -> Merge:
    """Returns the contact after an event's changes are applied.

    A change older than the value already stored is dropped (newer wins, R13);
    on a tie with a CRM value the CRM wins. Applied values take the event's
    source as origin, so they are pushable (R12).
    """
    fields = dict(current.fields)
    meta = dict(current.meta)
    changed: list[str] = []
    kept: list[str] = []
    conflicts: list[Conflict] = []
    for name, value in changes.items():
        old = meta.get(name)
        if old is not None and (old.at > occurred_at or (old.at == occurred_at and old.from_crm)):
            kept.append(name)
            if old.from_crm and fields.get(name) != value:
                conflicts.append(Conflict(name, value, occurred_at, fields.get(name), old.at, winner="crm"))
            continue
        if fields.get(name) != value or name not in fields or (old is not None and old.from_crm):
            changed.append(name)
        fields[name] = value
        meta[name] = FieldMeta(source, occurred_at)
    return Merge(ContactValues(fields, meta), tuple(changed), tuple(kept), tuple(conflicts))
