"""The pusher's values that cross its ports: a contact as a handler works on it, a planned
CRM write, and the CRM's final answer for one record.

Handlers and adapters both use them; neither owns them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.common.domain.contacts import ContactValues, is_implied, stored_field_meta
from crmsync.common.domain.push import fold_writes
from crmsync.common.domain.redelivery import WaitingValue, coalesce


@dataclass(frozen=True)
class ContactRefs:
    """Contacts named by id, CRM record id or lower-case e-mail: any of them matches."""

    ids: tuple[uuid.UUID, ...] = ()
    external_ids: tuple[str, ...] = ()
    emails_lower: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ids or self.external_ids or self.emails_lower)


@dataclass
class StoredContact:
    """A contact row as the handler works on it; `new` ones are inserted at the end.

    Field metadata stays in its stored JSON form, where a field without an
    entry is the CRM's as of `crm_modstamp`, and is parsed only for the fields
    an event touches: a contact may have many fields, an event few.
    """

    id: uuid.UUID
    account_id: str
    crm_object: str | None
    external_id: str | None
    email: str | None
    fields: dict[str, Any]
    raw_meta: dict[str, Any]
    crm_modstamp: datetime | None = None
    outbound_pending: bool = False  # a score or opt-out changed locally now: (re)set the flag
    new: bool = False
    dirty: bool = False
    # Fields whose value or metadata the batch set: only these are written back.
    touched: set[str] = field(default_factory=set)

    @property
    def values(self) -> ContactValues:
        """Returns every value with its parsed origin and time."""
        return ContactValues.from_stored(self.fields, self.raw_meta, self.crm_modstamp)

    @property
    def email_lower(self) -> str | None:
        return self.email.lower() if self.email else None

    def view(self, names: Iterable[str]) -> ContactValues:
        """Returns every value, with origin and time parsed for `names` only."""
        fields, meta, stamp = self.fields, self.raw_meta, self.crm_modstamp
        return ContactValues(
            fields, {n: m for n in names if (m := stored_field_meta(n, fields, meta, stamp)) is not None}
        )

    def apply(self, values: ContactValues, names: Iterable[str]) -> None:
        """Takes the values of a merge whose touched fields are `names`."""
        self.fields = dict(values.fields)
        for name in names:
            meta = values.meta.get(name)
            if meta is not None and not is_implied(meta, self.crm_modstamp):
                self.raw_meta[name] = meta.to_json()
            self.touched.add(name)
        self.dirty = True


@dataclass
class PlannedWrite:
    """One record's write for one or more events (events of one contact are folded, in order)."""

    contact_id: uuid.UUID
    operation: str  # create | update
    crm_object: str
    crm_id: str | None
    values: dict[str, Any]
    email_lower: str | None
    event_ids: list[str] = field(default_factory=list)
    # Each value's change time, event and contact field: what waits if the CRM cannot take it now.
    origins: dict[str, WaitingValue] = field(default_factory=dict)

    def fold(
        self, values: dict[str, Any], event_id: str, origins: dict[str, WaitingValue] | None = None
    ) -> None:
        self.values = fold_writes(self.values, values)
        self.event_ids.append(event_id)
        self.origins = coalesce(self.origins, origins or {})


@dataclass(frozen=True)
class Outcome:
    """The final answer for one record: what the push log records."""

    success: bool
    crm_id: str | None
    attempts: int
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False  # transient, and still failing after the round of retries
    parked: bool = False  # the API budget is at its reserve: wait for it, not a failure
    retry_after: float | None = None  # seconds the CRM asked to wait

    @property
    def waits(self) -> bool:
        """True when the write waits in the store for re-delivery rather than failing (R24)."""
        return not self.success and (self.retryable or self.parked)


@dataclass(frozen=True)
class CreatedRecord:
    """A record the CRM created for a contact: its id is stored on the contact."""

    contact_id: uuid.UUID
    crm_object: str
    crm_id: str
