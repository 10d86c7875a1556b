"""Contacts and their CRM owners in PostgreSQL (the puller and pusher write them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, column, func, select, table

from crmsync.common.db.schema import Contact, ContactSearch, ContactSearchState, CrmOwner
from crmsync.mapping_api.adapters.rows import SessionStore, value_of
from crmsync.mapping_api.field_fill import FieldFill
from crmsync.mapping_api.values import ContactInfo, ContactQuery, OwnerInfo

# The schema of the accounts' own search tables (migration 0009).
PARTS = "contact_search_parts"


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresContacts(SessionStore):
    async def page(self, account_id: str, q: ContactQuery) -> list[ContactInfo]:
        query = select(Contact).where(Contact.account_id == account_id)
        if q.crm_object is not None:
            query = query.where(Contact.crm_object == q.crm_object)
        if q.search:
            query = query.where(await self._matching(account_id, q))
        if q.after is not None:
            query = query.where(Contact.id > q.after)
        rows = await self._session.scalars(query.order_by(Contact.id).limit(q.limit))
        return [value_of(ContactInfo, row) for row in rows]

    async def _matching(self, account_id: str, q: ContactQuery) -> ColumnElement[bool]:
        """The contacts of the page whose name, e-mail or company holds the search (R19), as a condition.

        Search entries are lower-cased with a trigram index: in the shared table, or
        the account's own after a large first load. Each contact has one entry, so
        the page is taken from the entries (their index, then the first ids after
        `after`), and only its rows are read. While a first load's entries are still
        owed, the account's contacts are scanned.
        """
        assert q.search
        pattern = _like(q.search)
        state = (
            await self._session.execute(
                select(ContactSearchState.relname, ContactSearchState.pending_since).where(
                    ContactSearchState.account_id == account_id
                )
            )
        ).one_or_none()
        if state is not None and state.pending_since is not None:
            return Contact.search_text.like(pattern, escape="\\")
        if state is not None and state.relname is not None:
            entries = table(
                state.relname, column("contact_id"), column("crm_object"), column("search_text"), schema=PARTS
            )
            found = select(entries.c.contact_id).where(entries.c.search_text.like(pattern, escape="\\"))
        else:
            entries = ContactSearch.__table__
            found = select(entries.c.contact_id).where(
                entries.c.account_id == account_id, entries.c.search_text.like(pattern, escape="\\")
            )
        if q.crm_object is not None:
            found = found.where(entries.c.crm_object == q.crm_object)
        if q.after is not None:
            found = found.where(entries.c.contact_id > q.after)
        return Contact.id.in_(found.order_by(entries.c.contact_id).limit(q.limit))

    async def count_by_object(self, account_id: str) -> dict[str | None, int]:
        result = await self._session.execute(
            select(Contact.crm_object, func.count())
            .where(Contact.account_id == account_id)
            .group_by(Contact.crm_object)
        )
        return {crm_object: count for crm_object, count in result.all()}

    async def get(self, account_id: str, contact_id: uuid.UUID) -> ContactInfo | None:
        row = await self._session.scalar(
            select(Contact).where(Contact.account_id == account_id, Contact.id == contact_id)
        )
        return value_of(ContactInfo, row) if row else None

    async def owner(self, account_id: str, external_id: str) -> OwnerInfo | None:
        row = await self._session.get(CrmOwner, (account_id, external_id))
        return value_of(OwnerInfo, row) if row else None

    async def field_counts(self, account_id: str, fields: Sequence[str]) -> dict[str | None, FieldFill]:
        """Returns, per crm_object, the contact count and how many hold a non-null value of each field."""
        held = [
            func.count().filter(Contact.fields[name].astext.isnot(None)).label(f"f{i}")
            for i, name in enumerate(fields)
        ]
        result = await self._session.execute(
            select(Contact.crm_object, func.count(), *held)
            .where(Contact.account_id == account_id)
            .group_by(Contact.crm_object)
        )
        return {
            crm_object: FieldFill(total, dict(zip(fields, counts, strict=True)))
            for crm_object, total, *counts in result.all()
        }
