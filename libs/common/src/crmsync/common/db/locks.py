"""Session advisory locks held on a dedicated connection.

A session lock lives as long as its connection: a process that dies or loses
its connection loses the lock, and another one can take it. The scheduler's
leader election (one key) and the puller's per-account run lock (a key space
and the account) are both this one mechanism.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_TRY_ONE = text("select pg_try_advisory_lock(:key)")
_UNLOCK_ONE = text("select pg_advisory_unlock(:key)")
_TRY_SPACE = text("select pg_try_advisory_lock(:space, hashtext(:name))")
_UNLOCK_SPACE = text("select pg_advisory_unlock(:space, hashtext(:name))")


class SessionAdvisoryLock:
    """One session advisory lock: a bigint `key`, or a key `space` and a `name` hashed by the server."""

    def __init__(
        self, engine: AsyncEngine, *, key: int | None = None, space: int | None = None, name: str | None = None
    ) -> None:
        if (key is None) == (space is None) or (space is not None and name is None):
            raise ValueError("give either key, or space and name")
        self._engine = engine
        if key is not None:
            self._try, self._unlock, self._params = _TRY_ONE, _UNLOCK_ONE, {"key": key}
        else:
            self._try, self._unlock, self._params = _TRY_SPACE, _UNLOCK_SPACE, {"space": space, "name": name}
        self._conn: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock, as far as it knows (see `check`)."""
        return self._conn is not None

    async def try_acquire(self) -> bool:
        """Takes the lock if it is free; returns whether this process now holds it."""
        if self._conn is not None:
            return True
        conn = await self._engine.connect()
        try:
            got = (await conn.execute(self._try, self._params)).scalar_one()
            # Leave no transaction open on the long-lived connection.
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    async def check(self) -> bool:
        """Returns whether the lock's connection still answers; forgets the lock when it does not."""
        if self._conn is None:
            return False
        try:
            await self._conn.execute(text("select 1"))
            await self._conn.commit()
            return True
        except (DBAPIError, OSError):
            await self._drop()
            return False

    async def release(self) -> None:
        """Gives the lock back (closing its connection gives it back too, if the unlock fails)."""
        if self._conn is None:
            return
        with contextlib.suppress(DBAPIError, OSError):
            await self._conn.execute(self._unlock, self._params)
            await self._conn.commit()
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(DBAPIError, OSError):
                await conn.close()
