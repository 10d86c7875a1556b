"""The outbox relay against the real Postgres: a batch goes out at once in order per key,
Kafka away is retried, a bug ends the relay.

The relay publishes every pending row of its database, so these tests run in a
database of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
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


class OrderedPublisher:
    """Records what it publishes per key; fails the messages named in `fail` once each.

    Holds every send until `together` sends are in flight at once (or a second passed),
    so a relay that waits for one acknowledgement before the next send is seen.
    """

    def __init__(self, *, fail: set[str] = frozenset(), together: int = 1) -> None:
        self.fail = set(fail)
        self.together = together
        self.in_flight = 0
        self.most_in_flight = 0
        self.published: dict[bytes, list[str]] = {}
        self._all_in = asyncio.Event()

    async def publish_raw(self, topic: str, *, key: bytes, value: bytes, headers=None) -> None:
        job_id = orjson.loads(value)["job_id"]
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.together:
            self._all_in.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), 1.0)
            if job_id in self.fail:
                self.fail.discard(job_id)
                raise KafkaConnectionError(f"{job_id} not acknowledged")
            self.published.setdefault(key, []).append(job_id)
        finally:
            self.in_flight -= 1


async def _enqueue_one(sessions: async_sessionmaker[AsyncSession]) -> None:
    message = RunOutbound(job_id="j1", account_id=ACCOUNT, requested_at=datetime.now(UTC))
    async with UnitOfWork(sessions).begin() as session:
        enqueue(session, account_id=ACCOUNT, topic="outbound-jobs", key=ACCOUNT, message=message)


async def _enqueue(sessions: async_sessionmaker[AsyncSession], jobs: list[tuple[str, str]]) -> None:
    """Enqueues one outbound job per (key, job id), in that order."""
    async with UnitOfWork(sessions).begin() as session:
        for key, job_id in jobs:
            message = RunOutbound(job_id=job_id, account_id=ACCOUNT, requested_at=datetime.now(UTC))
            enqueue(session, account_id=ACCOUNT, topic="outbound-jobs", key=key, message=message)


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


async def test_r18_a_batch_is_sent_at_once_in_order_per_key_and_each_row_is_marked_once_acknowledged(
    sessions,
) -> None:
    keys = [f"k{i}" for i in range(10)]
    await _enqueue(sessions, [(key, f"{key}-{n}") for n in range(3) for key in keys])
    publisher = OrderedPublisher(together=len(keys))
    relay = _relay(sessions, publisher)  # type: ignore[arg-type]
    assert await relay.publish_pending() == 30
    # Every key's first message was in flight at once: one round trip, not one per message.
    assert publisher.most_in_flight == len(keys)
    assert publisher.published == {key.encode(): [f"{key}-{n}" for n in range(3)] for key in keys}
    assert await _unpublished(sessions) == 0
    assert await relay.publish_pending() == 0


async def test_r18_a_send_that_fails_holds_back_the_rest_of_its_key_and_nothing_else(sessions) -> None:
    await _enqueue(sessions, [(key, f"{key}-{n}") for n in range(3) for key in ("a", "b")])
    publisher = OrderedPublisher(fail={"a-1"})
    relay = _relay(sessions, publisher)  # type: ignore[arg-type]
    with pytest.raises(KafkaConnectionError, match="a-1"):
        await relay.publish_pending()
    # a-0 went out and is marked; a-1 and a-2 wait, so key a never goes out of order.
    assert publisher.published == {b"a": ["a-0"], b"b": ["b-0", "b-1", "b-2"]}
    assert await _unpublished(sessions) == 2
    assert await relay.publish_pending() == 2
    assert publisher.published[b"a"] == ["a-0", "a-1", "a-2"]
    assert await _unpublished(sessions) == 0


async def test_r18_relays_of_several_services_on_one_outbox_publish_each_row_once(sessions) -> None:
    keys = [f"k{i}" for i in range(40)]
    await _enqueue(sessions, [(key, f"{key}-{n}") for n in range(5) for key in keys])
    publisher = OrderedPublisher(together=8)
    relays = [
        OutboxRelay(sessions=sessions, publisher=publisher, batch=25)  # type: ignore[arg-type]
        for _ in range(3)
    ]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.publish_pending():
            pass

    await asyncio.wait_for(asyncio.gather(*(drain(r) for r in relays)), 30)
    published = [job for jobs in publisher.published.values() for job in jobs]
    assert sorted(published) == sorted(f"{key}-{n}" for n in range(5) for key in keys)
    assert await _unpublished(sessions) == 0
