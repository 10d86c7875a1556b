"""The transactional outbox: messages written with a database change, published after it.

`enqueue` adds a row inside the caller's transaction; `OutboxRelay` publishes
unpublished rows and marks them, so a crash between commit and publish loses
nothing (a message may be published twice; consumers deduplicate, R18).

A batch goes out at once: the messages of one topic and key one after another
(each sent once the one before it is acknowledged, so their order holds even
when a send fails), those of different keys side by side, so a batch costs
about one round trip to the broker instead of one per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
        """Publishes up to one batch of unpublished messages; returns how many.

        The rows stay locked (other relays skip them) until those acknowledged are
        marked; a failed send leaves its row and the later rows of its key for a
        later round, and its error is raised once the others are marked.
        """
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
            chains: dict[tuple[str, bytes], list[OutboxMessage]] = {}
            for row in rows:
                chains.setdefault((row.topic, row.key), []).append(row)
            results = await asyncio.gather(*(self._send_in_order(chain) for chain in chains.values()))
            sent = [row_id for done, _ in results for row_id in done]
            if sent:
                await session.execute(
                    update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(published_at=func.now())
                )
        failures = [error for _, error in results if error is not None]
        if failures:
            raise failures[0]
        return len(rows)

    async def _send_in_order(self, rows: Sequence[OutboxMessage]) -> tuple[list[int], Exception | None]:
        """Sends one key's rows in order; returns the ids acknowledged and the error that stopped it."""
        done: list[int] = []
        for row in rows:
            try:
                await self._publisher.publish_raw(row.topic, key=row.key, value=row.value)
            except Exception as error:  # raised by publish_pending once what was sent is marked
                return done, error
            done.append(row.id)
        return done, None

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
