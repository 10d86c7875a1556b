"""The scheduler's loop: Postgres or Kafka away is retried at the next tick, a bug ends the loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from crmsync.common.domain.schedule import LastRuns, Schedule, ScheduleMode
from crmsync.scheduler.entrypoints.leader_loop import LeaderLoop
from crmsync.scheduler.handlers.purge_history import Housekeeping, Retention
from crmsync.scheduler.values import AccountSchedule

NOW = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)
ACCOUNT = AccountSchedule(
    account_id="acme",
    schedule=Schedule(mode=ScheduleMode.INTERVAL, interval_minutes=1),
    last_runs=LastRuns(last_full_success=NOW - timedelta(days=1), last_incremental=NOW - timedelta(days=1)),
    record_count=10,
    daily_api_limit=None,
)
AWAY = [
    OperationalError("select", {}, OSError("connection refused")),
    KafkaConnectionError("broker away"),
    ConnectionResetError("reset"),
    TimeoutError(),
]


class Failures:
    """Raises the next failure planted at a named place, once each."""

    def __init__(self) -> None:
        self.planted: dict[str, list[BaseException]] = {}

    def plant(self, where: str, *errors: BaseException) -> None:
        self.planted.setdefault(where, []).extend(errors)

    def at(self, where: str) -> None:
        if self.planted.get(where):
            raise self.planted[where].pop(0)


class FakeStore:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def due_accounts(self, *, now: datetime, limit: int) -> list[AccountSchedule]:
        self._db.failures.at("read")
        look = self._db.next_look
        return [ACCOUNT] if look is None or look <= now else []

    async def set_next_looks(self, looks) -> None:
        for look in looks:
            self._db.pending_look = look.at

    async def record_new_jobs(self, jobs) -> set[tuple[str, str]]:
        new = {(j.account_id, j.job_id) for j in jobs} - self._db.recorded
        self._db.pending_records |= new
        return new

    def enqueue(self, *, account_id: str, topic: str, key: str, message: BaseModel) -> None:
        self._db.pending_outbox.append((topic, message))

    async def delete_outbox(self, *, published_before: datetime, limit: int) -> int:
        self._db.failures.at("purge")
        return 0

    async def delete_sync_runs(self, *, finished_before: datetime, limit: int) -> int:
        return 0

    async def delete_stale_sightings(self, *, limit: int) -> int:
        return 0

    async def delete_scheduled_jobs(self, *, slot_before: datetime, limit: int) -> int:
        return 0

    async def delete_push_log(self, *, created_before: datetime, limit: int) -> int:
        return 0

    async def delete_api_usage(self, *, day_before: date, limit: int) -> int:
        return 0


class FakeDatabase:
    """Transactions over in-memory tables: what a block wrote is kept only when it ends without an error."""

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self.recorded: set[tuple[str, str]] = set()
        self.outbox: list[tuple[str, BaseModel]] = []
        self.pending_records: set[tuple[str, str]] = set()
        self.pending_outbox: list[tuple[str, BaseModel]] = []
        self.next_look: datetime | None = None
        self.pending_look: datetime | None = None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeStore]:
        self.pending_records, self.pending_outbox, self.pending_look = set(), [], self.next_look
        yield FakeStore(self)
        self.recorded |= self.pending_records
        self.outbox += self.pending_outbox
        self.next_look = self.pending_look


class FakeOutbox:
    def __init__(self, db: FakeDatabase, failures: Failures) -> None:
        self._db = db
        self._failures = failures
        self.published: list[str] = []

    async def publish_pending(self) -> int:
        self._failures.at("publish")
        batch, self._db.outbox = self._db.outbox, []
        self.published += [message.job_id for _, message in batch]  # type: ignore[attr-defined]
        return len(batch)


class FakeLeader:
    def __init__(self, failures: Failures) -> None:
        self._failures = failures
        self.released = False

    async def ensure(self) -> bool:
        self._failures.at("elect")
        return True

    async def release(self) -> None:
        self.released = True


def _loop(failures: Failures) -> tuple[LeaderLoop, FakeOutbox, FakeLeader]:
    db = FakeDatabase(failures)
    outbox, leader = FakeOutbox(db, failures), FakeLeader(failures)
    housekeeping = Housekeeping(
        history=db,
        retention=Retention(*(timedelta(days=30),) * 4),
        interval_s=0.0,
        batch_rows=10,
        batches_per_tick=5,
    )
    loop = LeaderLoop(leader=leader, jobs=db, outbox=outbox, housekeeping=housekeeping, tick_s=0.01)
    loop.clock = lambda: NOW
    return loop, outbox, leader


async def _until(condition: Callable[[], bool], *, task: asyncio.Task) -> None:
    for _ in range(200):
        if condition() or task.done():
            return
        await asyncio.sleep(0.01)


# acme's phase in a one-minute interval is 45 s: its tick before 10:00:30 is 09:59:45.
EXPECTED = ["acme:incremental:2026-11-28T09:59:45Z", "acme:scores_optouts:2026-11-28T09:59:45Z"]


@pytest.mark.parametrize("where", ["elect", "read", "publish", "purge"])
@pytest.mark.parametrize("away", AWAY, ids=lambda error: type(error).__name__)
async def test_r18_a_tick_that_finds_postgres_or_kafka_away_is_retried_and_the_jobs_go_out_once(
    where: str, away: BaseException
) -> None:
    failures = Failures()
    failures.plant(where, away)
    loop, outbox, leader = _loop(failures)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await _until(lambda: not failures.planted[where] and bool(outbox.published), task=task)
        await asyncio.sleep(0.05)  # more ticks: nothing is emitted again
        assert not task.done(), task
        assert failures.planted[where] == []
        assert outbox.published == EXPECTED
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)
    assert leader.released


@pytest.mark.parametrize("where", ["elect", "read", "publish", "purge"])
async def test_a_tick_that_hits_a_bug_ends_the_loop_with_that_error_and_gives_the_lead_back(
    where: str,
) -> None:
    failures = Failures()
    failures.plant(where, ValueError("a bug"))
    loop, _, leader = _loop(failures)
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(loop.run(asyncio.Event()), 2)
    assert leader.released
