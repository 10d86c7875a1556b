"""The stores of one transaction, and the unit of work that opens it: the adapter side of `Transactions`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.mapping_api.adapters.accounts import PostgresAccounts
from crmsync.mapping_api.adapters.connections import PostgresConnections
from crmsync.mapping_api.adapters.contacts import PostgresContacts
from crmsync.mapping_api.adapters.deliveries import PostgresDeliveries
from crmsync.mapping_api.adapters.history import PostgresPushLog, PostgresSyncRuns
from crmsync.mapping_api.adapters.mappings import PostgresMappings, PostgresPolicies
from crmsync.mapping_api.adapters.outbox import PostgresOutbox
from crmsync.mapping_api.adapters.schedules import PostgresSchedules


class PostgresStores:
    """Every store over one session; none of them commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.accounts = PostgresAccounts(session)
        self.connections = PostgresConnections(session)
        self.mappings = PostgresMappings(session)
        self.policies = PostgresPolicies(session)
        self.schedules = PostgresSchedules(session)
        self.sync_runs = PostgresSyncRuns(session)
        self.contacts = PostgresContacts(session)
        self.push_log = PostgresPushLog(session)
        self.outbox = PostgresOutbox(session)
        self.deliveries = PostgresDeliveries(session)


class PostgresTransactions:
    """`begin()` runs a block in one transaction of the unit of work (it commits and wakes the outbox)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresStores]:
        async with self._uow.begin() as session:
            yield PostgresStores(session)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresStores]:
        async with self._uow.read() as session:
            yield PostgresStores(session)


class InSession:
    """The stores of a transaction the caller opened on its own session and will commit itself."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresStores]:
        yield PostgresStores(self._session)

    read = begin
