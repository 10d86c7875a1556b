"""The puller's ports over Postgres: transactions of a sync, the job record, the run queue, the lock.

A unit of work opens and commits each transaction; the repositories here
work inside it and never commit. A database that cannot be reached or that
loses the connection is reported as `StoreUnavailable` (transient).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crmsync.common.db import account_config
from crmsync.common.db.locks import SessionAdvisoryLock
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.domain.account import CrmConnectionInfo
from crmsync.common.domain.mapping import Mapping, PushPolicy
from crmsync.common.domain.pulled import MappedRecord
from crmsync.common.messages import RunSync
from crmsync.common.service import DEPENDENCY_ERRORS
from crmsync.puller.adapters import contact_rows, contact_store, related, runs
from crmsync.puller.adapters.repairs import PgRepairs
from crmsync.puller.domain.batches import BatchCounts, PreparedBatch
from crmsync.puller.domain.deals import PulledDeal
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.domain.lanes import Lane, LaneBacklog, WaitingAccount
from crmsync.puller.domain.runs import EntityAdvance, EntityState, RunCounts, RunEnd, RunProgress, SyncRun

T = TypeVar("T")


async def _reported_call(call: Awaitable[T]) -> T:
    """Returns what `call` returns; a lost or unreachable database is raised as StoreUnavailable."""
    try:
        return await call
    except DEPENDENCY_ERRORS as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class PgRuns:
    """Sync runs, sync state and the account's configuration in the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def covering_run(self, run: SyncRun) -> uuid.UUID | None:
        return await runs.covering_run(self._session, run=run)

    async def mapping(self, account_id: str) -> Mapping:
        return await account_config.load_current_mapping(self._session, account_id=account_id)

    async def connection(self, account_id: str) -> CrmConnectionInfo | None:
        return await account_config.load_connection(self._session, account_id=account_id)

    async def policy(self, account_id: str) -> PushPolicy:
        return await account_config.load_policy(self._session, account_id=account_id)

    async def last_repair_at(self, account_id: str) -> datetime | None:
        return await runs.last_repair_at(self._session, account_id=account_id)

    async def add_drift_found(self, run_id: uuid.UUID, found: int) -> None:
        await runs.add_drift_found(self._session, run_id=run_id, found=found)

    async def entity_state(self, account_id: str, entity: str) -> EntityState:
        return await runs.entity_state(self._session, account_id=account_id, entity=entity)

    async def advance_entity(self, account_id: str, entity: str, advance: EntityAdvance) -> None:
        await runs.advance_entity(self._session, account_id=account_id, entity=entity, advance=advance)

    async def add_progress(
        self, run_id: uuid.UUID, counts: RunCounts, progress: RunProgress | None = None
    ) -> None:
        await runs.add_progress(self._session, run_id=run_id, counts=counts, progress=progress)

    async def finish_run(self, run_id: uuid.UUID, end: RunEnd) -> None:
        await runs.finish_run(self._session, run_id=run_id, end=end)

    async def clear_full_request(self, account_id: str, started_at: datetime) -> None:
        await runs.clear_full_request(self._session, account_id=account_id, started_at=started_at)


class PgContacts:
    """The contact store in the session's transaction (its statements run on the driver's connection)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def has_contacts(self, account_id: str) -> bool:
        return await related.has_contacts(await self._session.connection(), account_id=account_id)

    async def apply_records(
        self, *, account_id: str, run_id: uuid.UUID, batch: PreparedBatch, full: bool
    ) -> BatchCounts:
        conn = await self._session.connection()
        return await contact_store.apply_records(
            conn, account_id=account_id, run_id=run_id, batch=batch, full=full
        )

    async def apply_deals(self, account_id: str, deals: Sequence[PulledDeal]) -> int:
        conn = await self._session.connection()
        return await related.apply_deals(conn, account_id=account_id, deals=deals)

    async def delete_by_external_ids(self, account_id: str, entity: str, external_ids: Sequence[str]) -> int:
        conn = await self._session.connection()
        return await related.delete_by_external_ids(
            conn, account_id=account_id, entity=entity, external_ids=external_ids
        )

    async def sweep_unseen(
        self, *, account_id: str, entity: str, run_id: uuid.UUID, started_at: datetime
    ) -> int:
        conn = await self._session.connection()
        return await related.sweep_unseen(
            conn, account_id=account_id, entity=entity, run_id=run_id, started_at=started_at
        )

    async def full_load_finished(self, account_id: str, *, first_load: bool) -> None:
        conn = await self._session.connection()
        await contact_store.full_load_finished(conn, account_id, first_load=first_load)


class PgSyncTransaction:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.runs = PgRuns(session)
        self.contacts = PgContacts(session)
        self.repairs = PgRepairs(session)


@asynccontextmanager
async def _reported(unit: AbstractAsyncContextManager[AsyncSession]) -> AsyncIterator[PgSyncTransaction]:
    """Yields the unit's transaction; a lost or unreachable database is raised as StoreUnavailable."""
    try:
        async with unit as session:
            yield PgSyncTransaction(session)
    except DEPENDENCY_ERRORS as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


class PgSyncStore:
    """The transactions a sync writes in (the `SyncStore` port)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def begin(self) -> AbstractAsyncContextManager[PgSyncTransaction]:
        return _reported(self._uow.begin())

    def read(self) -> AbstractAsyncContextManager[PgSyncTransaction]:
        return _reported(self._uow.read())

    def prepare(self, records: Sequence[MappedRecord], *, empty_store: bool) -> PreparedBatch:
        return contact_rows.prepare(records, empty_store=empty_store)


class PgJobStore:
    """Sync jobs recorded as queued runs (the `JobStore` port)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def record_jobs(self, jobs: Sequence[RunSync]) -> list[bool]:
        async with _reported(self._uow.begin()) as tx:
            return [await runs.record_job(tx.session, job=job) for job in jobs]


class PgRunQueue:
    """Where the workers find runs (the `RunQueue` port)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def waiting_accounts(self, limit: int) -> list[WaitingAccount]:
        async with _reported(self._uow.read()) as tx:
            return await runs.waiting_accounts(tx.session, limit=limit)

    async def claim_next_run(self, account_id: str, lanes: frozenset[Lane]) -> SyncRun | None:
        async with _reported(self._uow.begin()) as tx:
            return await runs.claim_next_run(tx.session, account_id=account_id, lanes=lanes)

    async def backlog(self) -> list[LaneBacklog]:
        async with _reported(self._uow.read()) as tx:
            return await runs.backlog(tx.session)


class PgAccountLock:
    """The lock that keeps one account's runs one at a time across puller replicas (the `AccountLock` port).

    It dies with its connection, so a run left 'running' by a killed puller, or by
    one that lost the database, is free to be resumed by the next one that takes it.
    """

    def __init__(self, engine: AsyncEngine, account_id: str) -> None:
        self._lock = SessionAdvisoryLock(engine, space=runs.ACCOUNT_LOCK_SPACE, name=account_id)

    async def try_acquire(self) -> bool:
        return await _reported_call(self._lock.try_acquire())

    async def release(self) -> None:
        """Gives the lock back; never raises for a lost database (closing the connection frees it too)."""
        try:
            await self._lock.release()
        except DEPENDENCY_ERRORS:
            return


def account_lock(engine: AsyncEngine, account_id: str) -> PgAccountLock:
    """Returns the account's run lock."""
    return PgAccountLock(engine, account_id)
