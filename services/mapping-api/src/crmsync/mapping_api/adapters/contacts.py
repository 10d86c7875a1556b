"""Contacts and their CRM owners in PostgreSQL (the puller and pusher write them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from crmsync.common.db.schema import Contact, CrmOwner
from crmsync.mapping_api.adapters.rows import SessionStore, value_of
from crmsync.mapping_api.field_fill import FieldFill
from crmsync.mapping_api.values import ContactInfo, ContactQuery, OwnerInfo


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresContacts(SessionStore):
    async def page(self, account_id: str, q: ContactQuery) -> list[ContactInfo]:
        query = select(Contact).where(Contact.account_id == account_id)
        if q.crm_object is not None:
            query = query.where(Contact.crm_object == q.crm_object)
        if q.search:
            # search_text is lower-cased and has a trigram index, so a substring match stays fast.
            query = query.where(Contact.search_text.like(_like(q.search), escape="\\"))
        if q.after is not None:
            query = query.where(Contact.id > q.after)
        rows = await self._session.scalars(query.order_by(Contact.id).limit(q.limit))
        return [value_of(ContactInfo, row) for row in rows]

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
