"""Waiting and failed pushes and dead-lettered events in PostgreSQL, over `crmsync.common.db.deliveries`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from crmsync.common.db import deliveries
from crmsync.common.db.schema import PushDelivery
from crmsync.common.domain.redelivery import WaitingPush
from crmsync.mapping_api.adapters.rows import SessionStore
from crmsync.mapping_api.operator_values import DeadLetterInfo, PushSummary


class PostgresDeliveries(SessionStore):
    async def page(
        self,
        account_id: str,
        *,
        state: str | None,
        error_code: str | None,
        after_id: int | None,
        limit: int,
    ) -> list[WaitingPush]:
        return await deliveries.list_deliveries(
            self._session,
            account_id=account_id,
            state=state,
            error_code=error_code,
            after_id=after_id,
            limit=limit,
        )

    async def get(self, account_id: str, push_id: int) -> WaitingPush | None:
        row = await self._session.scalar(
            select(PushDelivery).where(PushDelivery.account_id == account_id, PushDelivery.id == push_id)
        )
        return deliveries.push_of(row) if row else None

    async def summary(self, account_id: str) -> PushSummary:
        return PushSummary(
            deliveries=await deliveries.delivery_counts(self._session, account_id=account_id),
            push_log=await deliveries.push_log_counts(self._session, account_id=account_id),
        )

    async def retry_failed(
        self,
        account_id: str,
        *,
        now: datetime,
        ids: Sequence[int] | None = None,
        error_code: str | None = None,
    ) -> int:
        return await deliveries.retry_failed(
            self._session, account_id=account_id, now=now, ids=ids, error_code=error_code
        )

    async def dead_letters(
        self,
        account_id: str,
        *,
        after_id: int | None = None,
        limit: int = 100,
        event_ids: Sequence[str] | None = None,
    ) -> list[DeadLetterInfo]:
        letters = await deliveries.dead_lettered(
            self._session, account_id=account_id, after_id=after_id, limit=limit, event_ids=event_ids
        )
        return [
            DeadLetterInfo(
                id=d.id,
                event_id=d.event_id,
                source=d.source,
                reason=d.reason,
                occurred_at=d.occurred_at,
                logged_at=d.logged_at,
            )
            for d in letters
        ]

    async def release_for_replay(self, account_id: str, event_ids: Sequence[str]) -> list[str]:
        return await deliveries.release_for_replay(self._session, account_id=account_id, event_ids=event_ids)
