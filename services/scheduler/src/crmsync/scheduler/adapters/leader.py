"""Leader election with a Postgres session advisory lock held on a dedicated connection.

The lock lives as long as the connection: a replica that dies or loses its
connection loses the lead, and another one takes it at its next tick. Two
leaders at once (a connection the server has dropped but the old leader has
not noticed yet) cost nothing: emitted job ids are recorded, so both emit
each job once between them.
"""

from __future__ import annotations

import contextlib

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)


class AdvisoryLockLeader:
    def __init__(self, *, engine: AsyncEngine, key: int) -> None:
        self._engine = engine
        self._key = key
        self._conn: AsyncConnection | None = None

    @property
    def is_leader(self) -> bool:
        return self._conn is not None

    async def ensure(self) -> bool:
        """Returns whether this replica leads, taking the lock when it is free."""
        if self._conn is not None:
            try:
                await self._conn.execute(text("select 1"))
                return True
            except Exception:
                log.warning("leader_connection_lost")
                await self._drop()
        conn = await self._engine.connect()
        try:
            got = (
                await conn.execute(text("select pg_try_advisory_lock(:key)"), {"key": self._key})
            ).scalar_one()
            # Leave no transaction open on the long-lived connection.
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        log.info("leader_elected")
        return True

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.execute(text("select pg_advisory_unlock(:key)"), {"key": self._key})
                await self._conn.commit()
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
