"""The pusher's Postgres store (the Store port): sessions over its accounts, contacts, push log
and waiting pushes.

`begin()` is a unit of work: one transaction, committed when the block ends.
The repositories take the session it opened and never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.unit_of_work import UnitOfWork, retry_once_if_connection_lost
from crmsync.pusher.adapters.accounts import ConfigCache, PgAccounts
from crmsync.pusher.adapters.contacts import PgContacts
from crmsync.pusher.adapters.deliveries import PgDeliveries
from crmsync.pusher.adapters.push_log import PgPushLog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class PgSession:
    """The store as one session sees it."""

    def __init__(self, session: AsyncSession, configs: ConfigCache) -> None:
        self.accounts = PgAccounts(session, configs)
        self.contacts = PgContacts(session)
        self.push_log = PgPushLog(session)
        self.deliveries = PgDeliveries(session)


class PgStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        autocommit: async_sessionmaker[AsyncSession],
        configs: ConfigCache | None = None,
    ) -> None:
        """`autocommit` makes sessions whose statements each commit on their own."""
        self._uow = UnitOfWork(sessions)
        self._autocommit = autocommit
        self._configs = configs or ConfigCache(ttl_s=0)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PgSession]:
        """One transaction: committed when the block ends, rolled back on an error."""
        async with self._uow.begin() as session:
            yield PgSession(session, self._configs)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[PgSession]:
        """Each statement commits on its own: no BEGIN and COMMIT round trips around a step of one."""
        async with self._autocommit() as session:
            yield PgSession(session, self._configs)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PgSession]:
        """Reads only."""
        async with self._uow.read() as session:
            yield PgSession(session, self._configs)

    async def retry_if_connection_lost(self, attempt: Callable[[], Awaitable[T]], *, step: str) -> T:
        """Returns what `attempt` returns, run once more on fresh connections if the database dropped one."""

        def on_retry(error: BaseException) -> None:
            log.warning(step, reason="database connection lost", error=str(error))

        return await retry_once_if_connection_lost(attempt, on_retry=on_retry)
