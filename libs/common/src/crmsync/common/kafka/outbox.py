"""The transactional outbox: messages written with a database change, published after it.

`enqueue` adds a row inside the caller's transaction; `OutboxRelay` publishes
unpublished rows in order and marks them, so a crash between commit and publish
loses nothing (a message may be published twice; consumers deduplicate, R18).
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.schema import OutboxMessage
from crmsync.common.db.unit_of_work import mark_outbox_written
from crmsync.common.kafka.codec import encode
from crmsync.common.kafka.producer import Publisher
from crmsync.common.service import DEPENDENCY_ERRORS, Outage, refused_statement

log = structlog.get_logger(__name__)


def enqueue(session: AsyncSession, *, account_id: str, topic: str, key: str, message: BaseModel) -> None:
    """Adds a message to the outbox in the session's transaction; topic is a short name."""
    session.add(OutboxMessage(account_id=account_id, topic=topic, key=key.encode(), value=encode(message)))
    mark_outbox_written(session)


class OutboxRelay:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], publisher: Publisher, batch: int = 200
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._batch = batch
        self._wakeup = asyncio.Event()
        self._outage = Outage("outbox relay")

    def notify(self) -> None:
        """Asks the relay to publish now rather than at its next poll."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """Publishes up to one batch of unpublished messages; returns how many."""
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._publisher.publish_raw(row.topic, key=row.key, value=row.value)
            if rows:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([r.id for r in rows]))
                    .values(published_at=func.now())
                )
            return len(rows)

    async def run(self, stop: asyncio.Event, *, interval_s: float = 1.0) -> None:
        """Publishes until `stop`; a bug (any error but Postgres or Kafka being away) ends it."""
        while not stop.is_set():
            wait_s = interval_s
            try:
                while await self.publish_pending() == self._batch:
                    pass
                self._outage.recovered()
            except DEPENDENCY_ERRORS as error:
                if refused_statement(error):
                    raise
                # Kafka or Postgres is away: the rows stay and a later round retries, backing off.
                wait_s = max(interval_s, self._outage.failed(error))
            self._wakeup.clear()
            waiters = {asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
