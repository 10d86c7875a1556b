"""Waiting pushes in Postgres (the DeliveryStore port): `push_deliveries`, through the caller's session.

Rows are locked as they are read (`FOR UPDATE`), the due ones skipping those
another replica holds (`SKIP LOCKED`), so replicas share the re-delivery.
Never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, Uuid, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.deliveries import columns_of, push_of
from crmsync.common.db.schema import PushDelivery
from crmsync.common.domain.redelivery import WAITING, WaitingPush
from crmsync.pusher.adapters.arrays import any_of


class PgDeliveries:
    """The waiting pushes through the caller's session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def waiting_for(
        self, account_id: str, contact_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WaitingPush]:
        """Returns (and locks) the waiting pushes of these contacts, by contact id."""
        if not contact_ids:
            return {}
        rows = await self._session.scalars(
            select(PushDelivery)
            .where(
                PushDelivery.account_id == account_id,
                PushDelivery.contact_id == any_of(contact_ids, Uuid),
                PushDelivery.state == WAITING,
            )
            .order_by(PushDelivery.contact_id)
            .with_for_update()
        )
        return {row.contact_id: push_of(row) for row in rows}

    async def claim_due(self, *, now: datetime, limit: int, until: datetime) -> list[WaitingPush]:
        """Returns waiting pushes due by `now` that no one else holds, moved to `until` meanwhile.

        Moving them is the claim: a replica that stops while sending them leaves
        them to come back at `until`.
        """
        rows = (
            await self._session.scalars(
                select(PushDelivery)
                .where(PushDelivery.state == WAITING, PushDelivery.next_attempt_at <= now)
                .order_by(PushDelivery.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        pushes = [push_of(row) for row in rows]
        if pushes:
            await self._session.execute(
                update(PushDelivery)
                .where(PushDelivery.id == any_of([p.id for p in pushes], BigInteger))
                .values(next_attempt_at=until)
            )
        return pushes

    async def locked(self, ids: Sequence[int]) -> dict[int, WaitingPush]:
        """Returns (and locks) these pushes, by id."""
        if not ids:
            return {}
        rows = await self._session.scalars(
            select(PushDelivery)
            .where(PushDelivery.id == any_of(ids, BigInteger))
            .order_by(PushDelivery.id)
            .with_for_update()
        )
        return {row.id: push_of(row) for row in rows}

    async def save(self, pushes: Sequence[WaitingPush], *, now: datetime) -> None:
        """Inserts the new pushes and updates the others; a push left with no values is deleted."""
        for push in pushes:
            if push.id is not None and not push.values:
                await self._session.execute(delete(PushDelivery).where(PushDelivery.id == push.id))
            elif push.id is not None:
                await self._session.execute(
                    update(PushDelivery).where(PushDelivery.id == push.id).values(**columns_of(push, now=now))
                )
            elif push.values:
                await self._session.execute(insert(PushDelivery).values(**columns_of(push, now=now)))
