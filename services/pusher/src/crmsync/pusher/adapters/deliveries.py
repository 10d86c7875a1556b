"""Waiting pushes in Postgres (the DeliveryStore port): `push_deliveries`, through the caller's session.

Rows are locked as they are read (`FOR UPDATE`), the due ones skipping those
another replica holds (`SKIP LOCKED`), so replicas share the re-delivery.
Never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Uuid, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import PushDelivery
from crmsync.common.domain.redelivery import WAITING, WaitingPush, WaitingValue
from crmsync.pusher.adapters.arrays import any_of


def _push(row: PushDelivery) -> WaitingPush:
    return WaitingPush(
        id=row.id,
        account_id=row.account_id,
        contact_id=row.contact_id,
        operation=row.operation,
        crm_object=row.crm_object,
        crm_id=row.crm_id,
        email_lower=row.email_lower,
        values={name: WaitingValue.from_json(raw) for name, raw in row.fields.items()},
        event_ids=tuple(row.event_ids),
        failures=row.failures,
        first_failed_at=row.first_failed_at,
        next_attempt_at=row.next_attempt_at,
        last_error_code=row.last_error_code,
        last_error_message=row.last_error_message,
        state=row.state,
        created_at=row.created_at,
    )


def _columns(push: WaitingPush, now: datetime) -> dict[str, Any]:
    return {
        "account_id": push.account_id,
        "contact_id": push.contact_id,
        "operation": push.operation,
        "crm_object": push.crm_object,
        "crm_id": push.crm_id,
        "email_lower": push.email_lower,
        "fields": {name: value.to_json() for name, value in push.values.items()},
        "event_ids": list(push.event_ids),
        "state": push.state,
        "failures": push.failures,
        "first_failed_at": push.first_failed_at,
        "next_attempt_at": push.next_attempt_at,
        "last_error_code": push.last_error_code,
        "last_error_message": push.last_error_message,
        "updated_at": now,
    }


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
        return {row.contact_id: _push(row) for row in rows}

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
        pushes = [_push(row) for row in rows]
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
        return {row.id: _push(row) for row in rows}

    async def save(self, pushes: Sequence[WaitingPush], *, now: datetime) -> None:
        """Inserts the new pushes and updates the others; a push left with no values is deleted."""
        for push in pushes:
            if push.id is not None and not push.values:
                await self._session.execute(delete(PushDelivery).where(PushDelivery.id == push.id))
            elif push.id is not None:
                await self._session.execute(
                    update(PushDelivery).where(PushDelivery.id == push.id).values(**_columns(push, now))
                )
            elif push.values:
                await self._session.execute(insert(PushDelivery).values(**_columns(push, now)))
