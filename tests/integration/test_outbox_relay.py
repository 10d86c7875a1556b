"""The outbox relay against the real Postgres: Kafka away is retried, a bug ends the relay.

The relay publishes every pending row of its database, so these tests run in a
database of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.schema import Account, OutboxMessage
from crmsync.common.db.session import create_engine, create_sessionmaker
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.kafka.outbox import OutboxRelay, enqueue
from crmsync.common.messages import RunOutbound
from crmsync.common.settings import CommonSettings
from tests.support.databases import scratch_database

pytestmark = pytest.mark.integration

ACCOUNT = "relay"


class FlakyPublisher:
    """Fails its first calls with the given errors, then records what it is asked to publish."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.published: list[tuple[str, bytes | str | None]] = []

    async def publish_raw(self, topic: str, *, key: bytes | str | None, value: bytes, headers=None) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.published.append((topic, key))


@pytest_asyncio.fixture
async def sessions(base_settings: CommonSettings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with scratch_database(base_settings.database_url, label="outbox") as url:
        engine = create_engine(base_settings.model_copy(update={"database_url": url}), pool_size=2)
        sessions = create_sessionmaker(engine)
        async with sessions.begin() as session:
            session.add(Account(id=ACCOUNT, name=ACCOUNT))
        try:
            yield sessions
        finally:
            await engine.dispose()


async def _enqueue_one(sessions: async_sessionmaker[AsyncSession]) -> None:
    message = RunOutbound(job_id="j1", account_id=ACCOUNT, requested_at=datetime.now(UTC))
    async with UnitOfWork(sessions).begin() as session:
        enqueue(session, account_id=ACCOUNT, topic="outbound-jobs", key=ACCOUNT, message=message)


async def _unpublished(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        rows = await session.scalars(select(OutboxMessage.id).where(OutboxMessage.published_at.is_(None)))
        return len(rows.all())


def _relay(sessions: async_sessionmaker[AsyncSession], publisher: FlakyPublisher) -> OutboxRelay:
    return OutboxRelay(sessions=sessions, publisher=publisher)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "away",
    [KafkaConnectionError("broker away"), OperationalError("select", {}, OSError("connection refused"))],
    ids=["kafka", "postgres"],
)
async def test_a_relay_whose_kafka_or_postgres_is_away_keeps_running_and_publishes_later(
    sessions, away
) -> None:
    await _enqueue_one(sessions)
    publisher = FlakyPublisher(away, away)
    relay = _relay(sessions, publisher)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop, interval_s=0.05))
    try:
        for _ in range(100):
            if publisher.published:
                break
            await asyncio.sleep(0.05)
        assert publisher.published == [("outbound-jobs", ACCOUNT.encode())]
        assert not task.done()
        assert await _unpublished(sessions) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_relay_whose_publisher_has_a_bug_ends_with_that_error_and_keeps_the_message(
    sessions,
) -> None:
    await _enqueue_one(sessions)
    relay = _relay(sessions, FlakyPublisher(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(relay.run(asyncio.Event(), interval_s=0.05), 5)
    assert await _unpublished(sessions) == 1
