"""Leader election with a Postgres session advisory lock held on a dedicated connection.

The lock lives as long as the connection: a replica that dies or loses its
connection loses the lead, and another one takes it at its next tick. Two
leaders at once (a connection the server has dropped but the old leader has
not noticed yet) cost nothing: emitted job ids are recorded, so both emit
each job once between them.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.db.locks import SessionAdvisoryLock

log = structlog.get_logger(__name__)


class AdvisoryLockLeader:
    def __init__(self, *, engine: AsyncEngine, key: int) -> None:
        self._lock = SessionAdvisoryLock(engine, key=key)

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    async def ensure(self) -> bool:
        """Returns whether this replica leads, taking the lock when it is free."""
        if self._lock.held:
            if await self._lock.check():
                return True
            log.warning("leader_connection_lost")
        if not await self._lock.try_acquire():
            return False
        log.info("leader_elected")
        return True

    async def release(self) -> None:
        await self._lock.release()
