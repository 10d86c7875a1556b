"""A unit of work: one transaction per use case, and the outbox woken after it commits.

Routes, repositories and helpers never commit: they take the session the unit
of work opened. When the transaction wrote outbox messages (`kafka.outbox.enqueue`),
the relay is asked to publish them as soon as the commit is done, rather than at
its next poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

OUTBOX_WRITTEN = "crmsync.outbox_written"


def mark_outbox_written(session: AsyncSession) -> None:
    """Records on the session that its transaction wrote outbox messages."""
    session.info[OUTBOX_WRITTEN] = True


class UnitOfWork:
    """Opens transactions: `async with uow.begin() as session:` commits at the end, rolls back on error."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, wake_outbox: Callable[[], None] | None = None
    ) -> None:
        self._sessions = sessions
        self._wake_outbox = wake_outbox

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """Yields a session in a new transaction; commits when the block ends without an error."""
        async with self._sessions() as session:
            async with session.begin():
                yield session
            wrote_outbox = session.info.pop(OUTBOX_WRITTEN, False)
        if wrote_outbox and self._wake_outbox is not None:
            self._wake_outbox()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Yields a session for reads only; whatever it did is rolled back at the end."""
        async with self._sessions() as session:
            yield session


T = TypeVar("T")


def connection_lost(error: BaseException) -> bool:
    """Returns whether the error is the database having dropped the connection the work ran on."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


async def retry_once_if_connection_lost(
    attempt: Callable[[], Awaitable[T]], *, on_retry: Callable[[BaseException], None] | None = None
) -> T:
    """Returns what `attempt` returns, running it once more if the database dropped its connection.

    Pooled connections that are not pinged before use fail when the server has
    dropped them; the second run gets a fresh one. `attempt` must open its own
    transactions and be harmless to run again. `on_retry(error)` is called before it.
    """
    try:
        return await attempt()
    except DBAPIError as error:
        if not connection_lost(error):
            raise
        if on_retry is not None:
            on_retry(error)
    return await attempt()
