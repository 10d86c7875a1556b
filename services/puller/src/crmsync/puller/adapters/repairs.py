"""Drift repair in Postgres (R25): candidate contacts, and repairs handed to the pusher via the outbox.

A repaired field goes back to what the CRM holds (its value, of CRM origin at the
record's time) and the local value goes to `crmsync.contact-changes` as the event
it was (its source and time), through the transactional outbox: the pusher merges
it as a change and sends it (a value equal to the one stored would be no change
to it). Both happen in one transaction, after the row is locked and found as it
was read; a field changed meanwhile is left alone. An event the pusher has logged
already is not handed over again, so a repeated pass never rewinds a value the
pusher will not apply (R18). Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.domain.contacts import CRM_ORIGIN, ContactValues, FieldMeta
from crmsync.common.domain.drift import RepairEvent, RepairPlan, StoredForRepair
from crmsync.common.kafka.outbox import enqueue
from crmsync.common.kafka.topics import CONTACT_CHANGES
from crmsync.common.messages import ContactChanged, ContactRef, EventSource

# Contacts with a CRM record and a local value newer than the CRM version last pulled,
# whose pushes are not in flight (pending, or waiting for their next attempt).
_CANDIDATES = text(
    """
    select c.id, c.crm_object, c.external_id, c.email, c.fields::text as fields,
           c.field_meta::text as field_meta, c.crm_modstamp
    from contacts c
    where c.account_id = :account_id and c.external_id is not null and c.crm_object is not null
      and (cast(:after as uuid) is null or c.id > cast(:after as uuid))
      and c.field_meta <> '{}'::jsonb
      and exists (
          select 1 from jsonb_each(c.field_meta) m
          where m.value ->> 'origin' <> 'crm'
            and (c.crm_modstamp is null or cast(m.value ->> 'at' as timestamptz) > c.crm_modstamp)
      )
      and not exists (
          select 1 from push_log p
          where p.account_id = c.account_id and p.contact_id = c.id and p.status in ('pending', 'waiting')
      )
    order by c.id
    limit :limit
    """
)

_LOCK = text(
    """
    select id, fields::text as fields, field_meta::text as field_meta, crm_modstamp from contacts
    where account_id = :account_id and id = any(cast(:ids as uuid[]))
    order by id
    for update
    """
)

_REWIND = text(
    """
    update contacts set fields = cast(:fields as jsonb), field_meta = cast(:meta as jsonb), updated_at = now()
    where account_id = :account_id and id = :id
    """
)

_FLAG_OUTBOUND = text(
    """
    update contacts set outbound_pending_at = :now
    where account_id = :account_id and id = any(cast(:ids as uuid[]))
    """
)

_KNOWN_EVENTS = text(
    "select event_id from push_log where account_id = :account_id and event_id = any(cast(:ids as text[]))"
)


def _values(fields: str, meta: str, crm_modstamp: datetime | None) -> ContactValues:
    return ContactValues.from_stored(orjson.loads(fields), orjson.loads(meta), crm_modstamp)


def _meta(meta: dict[str, dict[str, str]], name: str) -> FieldMeta | None:
    raw = meta.get(name)
    return None if raw is None else FieldMeta.from_json(raw)


class PgRepairs:
    """Drift repair in the session's transaction (the `RepairRepository` port)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def candidates(
        self, account_id: str, *, after: uuid.UUID | None, limit: int
    ) -> list[StoredForRepair]:
        rows = await self._session.execute(
            _CANDIDATES, {"account_id": account_id, "after": after, "limit": limit}
        )
        return [
            StoredForRepair(
                id=row.id,
                crm_object=row.crm_object,
                external_id=row.external_id,
                email=row.email,
                values=_values(row.fields, row.field_meta, row.crm_modstamp),
                crm_modstamp=row.crm_modstamp,
            )
            for row in rows
        ]

    async def apply(self, account_id: str, plans: Sequence[RepairPlan], *, now: datetime) -> int:
        """Hands the plans' repairs over; returns how many fields went (those changed meanwhile stay)."""
        events = [e for p in plans for e in p.events]
        known = {
            row[0]
            for row in await self._session.execute(
                _KNOWN_EVENTS, {"account_id": account_id, "ids": [e.event_id for e in events]}
            )
        }
        locked = {
            row.id: row
            for row in await self._session.execute(
                _LOCK, {"account_id": account_id, "ids": [e.contact_id for e in events]}
            )
        }
        handed = 0
        for event in events:
            row = locked.get(event.contact_id)
            if row is None or event.event_id in known:
                continue
            handed += await self._hand_over(account_id, event, row)
        outbound = [c for p in plans for c in p.outbound]
        if outbound:
            await self._session.execute(
                _FLAG_OUTBOUND, {"account_id": account_id, "ids": outbound, "now": now}
            )
        return handed + len(outbound)

    async def _hand_over(self, account_id: str, event: RepairEvent, row: Any) -> int:
        """Rewinds the event's fields to the CRM's values and enqueues the event; returns how many fields."""
        fields: dict[str, Any] = orjson.loads(row.fields)
        meta: dict[str, dict[str, str]] = orjson.loads(row.field_meta)
        stamp = row.crm_modstamp
        local = FieldMeta(event.origin, event.occurred_at)
        if any(fields.get(n) != v or _meta(meta, n) != local for n, v in event.changes.items()):
            return 0  # changed since it was read: the next pass looks again
        for name, (crm_value, crm_at) in event.crm_values.items():
            fields[name] = crm_value
            meta.pop(name, None)
            if stamp is None or crm_at != stamp:
                meta[name] = FieldMeta(CRM_ORIGIN, crm_at).to_json()
        await self._session.execute(
            _REWIND,
            {
                "account_id": account_id,
                "id": event.contact_id,
                "fields": orjson.dumps(fields).decode(),
                "meta": orjson.dumps(meta).decode(),
            },
        )
        message = ContactChanged(
            event_id=event.event_id,
            account_id=account_id,
            occurred_at=event.occurred_at,
            source=EventSource(event.origin),
            contact=ContactRef(id=event.contact_id),
            changes=dict(event.changes),
        )
        # Keyed by e-mail where there is one, as the platform's own events of the contact are.
        who = event.email.lower() if event.email else str(event.contact_id)
        enqueue(
            self._session,
            account_id=account_id,
            topic=CONTACT_CHANGES,
            key=f"{account_id}:{who}",
            message=message,
        )
        return len(event.changes)
