"""The account's API allocation (on its CRM connection) and the calls taken today, in PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.db.account_config import load_connection
from crmsync.common.db.allowance import calls_used
from crmsync.common.db.schema import CrmConnection
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.domain.allowance import ApiAllocation
from crmsync.mapping_api.adapters.rows import SessionStore


class PostgresAllowance(SessionStore):
    async def connection(self, account_id: str) -> CrmConnectionInfo | None:
        return await load_connection(self._session, account_id=account_id)

    async def used(self, account_id: str, day: date) -> int:
        return await calls_used(self._session, account_id=account_id, day=day)

    async def set_allocation(
        self, account_id: str, allocation: ApiAllocation, *, updated_at: datetime
    ) -> None:
        row = await self._session.get(CrmConnection, account_id)
        if row is None:
            raise LookupError(f"no CRM connection of {account_id!r} to set an allocation on")
        row.api_allocation_share = allocation.share
        row.api_allocation_calls = allocation.calls
        row.updated_at = updated_at
        await self._session.flush()


class PostgresAllowanceTransactions:
    """The allowance's store in one transaction of the unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresAllowance]:
        async with self._uow.begin() as session:
            yield PostgresAllowance(session)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresAllowance]:
        async with self._uow.read() as session:
            yield PostgresAllowance(session)


def allowance_transactions(sessions: async_sessionmaker[AsyncSession]) -> PostgresAllowanceTransactions:
    return PostgresAllowanceTransactions(UnitOfWork(sessions))
