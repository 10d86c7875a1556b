"""The contact store in Postgres, as the pusher reads and writes it (the ContactStore port)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, Uuid, bindparam, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import Contact
from crmsync.pusher.adapters.arrays import any_of
from crmsync.pusher.values import ContactRefs, CreatedRecord, StoredContact

_CONTACT_COLUMNS = (
    Contact.id,
    Contact.account_id,
    Contact.crm_object,
    Contact.external_id,
    Contact.email,
    Contact.fields,
    Contact.field_meta,
    Contact.crm_modstamp,
)

# One statement over arrays: an executemany of single-row updates costs a round trip per row.
_UPDATE_CHANGED = text(
    "update contacts c set email = v.email, fields = c.fields || v.fields::jsonb, "
    "field_meta = c.field_meta || v.meta::jsonb, updated_at = :now, "
    # A new change moves the flag's time, so an outbound run that read the
    # older time does not clear it (clear_outbound compares the time).
    "outbound_pending_at = coalesce(v.pending, c.outbound_pending_at) "
    "from unnest(cast(:ids as uuid[]), cast(:emails as text[]), cast(:fields as text[]), "
    "cast(:metas as text[]), cast(:pending as timestamptz[])) "
    "as v(id, email, fields, meta, pending) where c.id = v.id"
)


def _contact(row: Any, *, outbound_pending: bool = False) -> StoredContact:
    return StoredContact(
        id=row.id,
        account_id=row.account_id,
        crm_object=row.crm_object,
        external_id=row.external_id,
        email=row.email,
        fields=dict(row.fields),
        raw_meta=dict(row.field_meta),
        crm_modstamp=row.crm_modstamp,
        outbound_pending=outbound_pending,
    )


class PgContacts:
    """The account's contacts through the caller's session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, account_id: str, refs: ContactRefs) -> list[StoredContact]:
        """Returns (and locks) the account's contacts that any of `refs` names."""
        if not refs:
            return []
        # Always the same three conditions, so one prepared statement serves every batch.
        conditions = [
            Contact.id == any_of(refs.ids, Uuid),
            Contact.external_id == any_of(refs.external_ids, Text),
            Contact.email_lower == any_of(refs.emails_lower, Text),
        ]
        # Core rows rather than ORM objects: this runs for every batch of events.
        rows = (
            await self._session.execute(
                select(*_CONTACT_COLUMNS)
                .where(Contact.account_id == account_id, or_(*conditions))
                .order_by(Contact.created_at, Contact.id)
                .with_for_update()
            )
        ).all()
        return [_contact(row) for row in rows]

    async def save(self, contacts: Iterable[StoredContact], *, now: datetime) -> None:
        """Inserts the new contacts and updates the changed ones (the fields they touched)."""
        new, changed = [], []
        for c in contacts:
            row = {
                "id": c.id,
                "account_id": c.account_id,
                "crm_object": c.crm_object,
                "external_id": c.external_id,
                "email": c.email,
                "fields": c.fields,
                "field_meta": c.raw_meta,
                "outbound_pending_at": now if c.outbound_pending else None,
                "updated_at": now,
            }
            if c.new:
                new.append(row)
            elif c.dirty:
                # Only what the batch touched: a contact's other fields are neither sent
                # over the wire again nor parsed again by the server.
                row["fields"] = {n: c.fields[n] for n in c.touched if n in c.fields}
                row["field_meta"] = {n: c.raw_meta[n] for n in c.touched if n in c.raw_meta}
                changed.append(row)
        if new:
            await self._session.execute(insert(Contact.__table__), new)
        if changed:
            await self._session.execute(
                _UPDATE_CHANGED,
                {
                    "now": now,
                    "ids": [r["id"] for r in changed],
                    "emails": [r["email"] for r in changed],
                    "fields": [orjson.dumps(r["fields"]).decode() for r in changed],
                    "metas": [orjson.dumps(r["field_meta"]).decode() for r in changed],
                    "pending": [r["outbound_pending_at"] for r in changed],
                },
            )

    async def link_created(self, records: Sequence[CreatedRecord], *, now: datetime) -> None:
        """Stores created CRM records' ids on their contacts (unless one is stored already)."""
        if not records:
            return
        await self._session.execute(
            update(Contact.__table__)
            .where(Contact.id == bindparam("b_id"), Contact.external_id.is_(None))
            .values(crm_object=bindparam("b_object"), external_id=bindparam("b_ext"), updated_at=now),
            [{"b_id": r.contact_id, "b_object": r.crm_object, "b_ext": r.crm_id} for r in records],
        )

    async def pending_outbound(
        self, *, account_id: str, after: uuid.UUID | None, limit: int
    ) -> list[tuple[StoredContact, datetime]]:
        """Returns the next contacts (by id) whose score or opt-out waits for the outbound job."""
        query = (
            select(Contact)
            .where(Contact.account_id == account_id, Contact.outbound_pending_at.is_not(None))
            .order_by(Contact.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Contact.id > after)
        rows = (await self._session.scalars(query)).all()
        return [(_contact(row, outbound_pending=True), row.outbound_pending_at) for row in rows]  # type: ignore[misc]

    async def clear_outbound(self, *, seen: Sequence[tuple[uuid.UUID, datetime]]) -> None:
        """Clears the outbound flag of contacts unless it was set again since it was read."""
        if seen:
            await self._session.execute(
                update(Contact.__table__)
                .where(Contact.id == bindparam("b_id"), Contact.outbound_pending_at == bindparam("b_seen"))
                .values(outbound_pending_at=None),
                [{"b_id": cid, "b_seen": at} for cid, at in seen],
            )
