"""Sync runs and the push log in PostgreSQL (written by the puller and pusher, read here)."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, func, or_, select

from crmsync.common.db.schema import PushLog, SyncRun
from crmsync.mapping_api.adapters.rows import SessionStore, value_of
from crmsync.mapping_api.values import PushLogEntry, PushLogQuery, RunHistory, RunQuery, SyncRunInfo


class PostgresSyncRuns(SessionStore):
    async def history(self, account_id: str) -> RunHistory:
        """Returns the last successful full sync (its start and pull count), the latest sync
        requested that did not fail, and the latest outbound job, as the scheduler reads them."""
        last_full = (
            await self._session.execute(
                select(func.coalesce(SyncRun.started_at, SyncRun.requested_at), SyncRun.pulled)
                .where(
                    SyncRun.account_id == account_id, SyncRun.kind == "full", SyncRun.status == "succeeded"
                )
                .order_by(SyncRun.finished_at.desc().nulls_last())
                .limit(1)
            )
        ).first()
        last_sync = await self._session.scalar(
            select(func.max(SyncRun.requested_at)).where(
                SyncRun.account_id == account_id,
                SyncRun.kind.in_(("full", "incremental")),
                SyncRun.status != "failed",
            )
        )
        last_outbound = await self._session.scalar(
            select(func.max(SyncRun.requested_at)).where(
                SyncRun.account_id == account_id, SyncRun.kind == "scores_optouts"
            )
        )
        return RunHistory(
            last_full_success=last_full[0] if last_full else None,
            last_full_pulled=(last_full[1] or 0) if last_full else 0,
            last_incremental=last_sync,
            last_outbound=last_outbound,
        )

    async def page(self, account_id: str, q: RunQuery) -> list[SyncRunInfo]:
        query = select(SyncRun).where(SyncRun.account_id == account_id)
        if q.kind:
            query = query.where(SyncRun.kind == q.kind)
        if q.status:
            query = query.where(SyncRun.status == q.status)
        if q.before:
            at, ident = q.before
            query = query.where(
                or_(SyncRun.created_at < at, and_(SyncRun.created_at == at, SyncRun.id < ident))
            )
        rows = await self._session.scalars(
            query.order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(q.limit)
        )
        return [value_of(SyncRunInfo, row) for row in rows]

    async def get(self, account_id: str, run_id: uuid.UUID) -> SyncRunInfo | None:
        row = await self._session.scalar(
            select(SyncRun).where(SyncRun.account_id == account_id, SyncRun.id == run_id)
        )
        return value_of(SyncRunInfo, row) if row else None


class PostgresPushLog(SessionStore):
    async def page(self, account_id: str, q: PushLogQuery) -> list[PushLogEntry]:
        query = select(PushLog).where(PushLog.account_id == account_id)
        if q.contact_id is not None:
            query = query.where(PushLog.contact_id == q.contact_id)
        if q.status:
            query = query.where(PushLog.status == q.status)
        if q.before is not None:
            query = query.where(PushLog.id < q.before)
        rows = await self._session.scalars(query.order_by(PushLog.id.desc()).limit(q.limit))
        return [value_of(PushLogEntry, row) for row in rows]

    async def get(self, account_id: str, entry_id: int) -> PushLogEntry | None:
        row = await self._session.scalar(
            select(PushLog).where(PushLog.account_id == account_id, PushLog.id == entry_id)
        )
        return value_of(PushLogEntry, row) if row else None
