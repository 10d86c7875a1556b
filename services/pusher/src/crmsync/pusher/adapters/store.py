"""The pusher's Postgres store (the Store port): sessions over its accounts, contacts, push log
and waiting pushes.

`begin()` is a unit of work: one transaction, committed when the block ends.
The repositories take the session it opened and never commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.unit_of_work import UnitOfWork, connection_lost, retry_once_if_connection_lost
from crmsync.common.retry import RetryPolicy
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
        outage_s: float = 0.0,
    ) -> None:
        """`autocommit` makes sessions whose statements each commit on their own; a database that
        does not answer is waited for up to `outage_s`."""
        self._uow = UnitOfWork(sessions)
        self._outage_s = outage_s
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
        """Returns what `attempt` returns, run again on fresh connections if the database dropped one.

        A database that does not answer (restarting, failing over) is waited
        for, with growing waits, for up to `outage_s`; then the error is raised.
        """

        def on_retry(error: BaseException) -> None:
            log.warning(step, reason="database connection lost", error=str(error))

        deadline = time.monotonic() + self._outage_s
        tries = 0
        while True:
            try:
                return await retry_once_if_connection_lost(attempt, on_retry=on_retry)
            except _OUTAGE_ERRORS as error:
                if not _unavailable(error) or time.monotonic() >= deadline:
                    raise
                tries += 1
                log.warning(step, reason="database unavailable", error=str(error)[:300], tries=tries)
                await asyncio.sleep(_OUTAGE.delay(tries))


_OUTAGE_ERRORS = (
    DBAPIError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)
# Waits while the database does not answer: from 0.2 s doubling to 5 s, full jitter.
_OUTAGE = RetryPolicy(max_attempts=1, base_s=0.2, cap_s=5.0)


def _unavailable(error: BaseException) -> bool:
    """Returns whether the error is the database not answering, rather than the work being wrong.

    The driver's error is looked for under SQLAlchemy's wrapper and its adaptor.
    """
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and connection_lost(seen):
            return True
        if isinstance(seen, OSError | asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
            return True
        # asyncpg's "connection is closed" and "connection was closed in the middle of operation".
        if (
            isinstance(seen, asyncpg.InterfaceError | DBAPIError)
            and "connection" in str(seen)
            and "closed" in str(seen)
        ):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
