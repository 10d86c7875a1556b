"""A store bound to one unit of work's transaction: the adapter side of `Transactions`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.unit_of_work import UnitOfWork

Store = TypeVar("Store")


class InTransaction(Generic[Store]):
    """`begin()` opens a transaction of the unit of work and yields a store over its session."""

    def __init__(self, uow: UnitOfWork, store: Callable[[AsyncSession], Store]) -> None:
        self._uow = uow
        self._store = store

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Store]:
        """Yields the store; the unit of work commits when the block ends without an error."""
        async with self._uow.begin() as session:
            yield self._store(session)
