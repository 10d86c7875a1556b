"""The scheduler against the real Postgres and Kafka: one leader, each job once (R14, R15, R18)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import Account, CrmConnection, ScheduledJob, SyncRun, SyncSchedule
from crmsync.common.domain.schedule import Schedule, ScheduleMode, tick_at_or_before
from crmsync.common.kafka.topics import OUTBOUND_JOBS, SYNC_JOBS
from crmsync.scheduler.bootstrap import bootstrap
from crmsync.scheduler.settings import Settings

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)


class FastClock:
    """A clock that runs `speed` times faster than real time from BASE; shared by the replicas."""

    def __init__(self, speed: float) -> None:
        self._start = time.monotonic()
        self._speed = speed

    def __call__(self) -> datetime:
        return BASE + timedelta(seconds=(time.monotonic() - self._start) * self._speed)


async def _connected_account(
    sessions, settings, account_id: str, *, interval: int, full_age: timedelta
) -> None:
    async with sessions.begin() as session:
        session.add(
            CrmConnection(
                account_id=account_id,
                login_url="http://127.0.0.1:1",
                auth_method="client_credentials",
                client_id="client",
                secrets_encrypted=SecretBox(settings.secret_key.get_secret_value()).seal(
                    {"client_secret": "s"}
                ),
            )
        )
        session.add(SyncSchedule(account_id=account_id, mode="interval", interval_minutes=interval))
        session.add(
            SyncRun(
                account_id=account_id,
                job_id=f"{account_id}:seed-full",
                kind="full",
                reason="first_sync",
                status="succeeded",
                requested_at=BASE - full_age,
                started_at=BASE - full_age,
                finished_at=BASE - full_age + timedelta(minutes=1),
                pulled=10,
            )
        )


async def _read_all(settings, topic: str, account_id: str) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"read-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[dict] = []
    try:
        quiet = 0
        while quiet < 3:
            batch = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batch.values() for r in rs]
            quiet = 0 if records else quiet + 1
            out += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return [m for m in out if m["account_id"] == account_id]


def _replica(settings) -> Settings:
    """Returns scheduler settings with a fast tick and a lock key of this test's own."""
    replica_settings = Settings(**settings.model_dump(), scheduler_tick_s=0.1)
    replica_settings = replica_settings.model_copy(update={"scheduler_lock_key": random.randint(1, 2**62)})
    return replica_settings


async def test_r18_two_scheduler_replicas_emit_each_job_once_and_the_second_takes_over(
    settings, sessions, engine, account_id
) -> None:
    await _connected_account(sessions, settings, account_id, interval=1, full_age=timedelta(days=1))
    clock = FastClock(speed=300)  # a one-minute tick every 0.2 s
    replica_settings = _replica(settings)
    first = bootstrap(replica_settings, engine=engine, clock=clock)
    second = bootstrap(replica_settings, engine=engine, clock=clock)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(first.main(stop_first)), asyncio.create_task(second.main(stop_second))]
    try:
        await asyncio.sleep(3)
        assert [first.leader.is_leader, second.leader.is_leader].count(True) == 1
        leader_stop = stop_first if first.leader.is_leader else stop_second
        follower = second if first.leader.is_leader else first
        leader_stop.set()
        await asyncio.sleep(3)
        assert follower.leader.is_leader
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*tasks)

    sync_jobs = await _read_all(settings, SYNC_JOBS, account_id)
    outbound = await _read_all(settings, OUTBOUND_JOBS, account_id)
    ids = [m["job_id"] for m in sync_jobs]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 15  # a tick every 0.2 s for 6 s, across the hand-over
    assert {m["kind"] for m in sync_jobs} == {"incremental"}
    assert {m["reason"] for m in sync_jobs} == {"schedule"}
    outbound_ids = [m["job_id"] for m in outbound]
    assert len(outbound_ids) == len(set(outbound_ids))
    assert {i.replace(":scores_optouts:", ":incremental:") for i in outbound_ids} == set(ids)
    async with sessions() as session:
        recorded = set(
            await session.scalars(select(ScheduledJob.job_id).where(ScheduledJob.account_id == account_id))
        )
    assert recorded == set(ids) | set(outbound_ids)


async def test_r15_a_field_added_to_the_mapping_makes_the_scheduler_emit_a_full_sync(
    settings, sessions, engine, account_id
) -> None:
    await _connected_account(sessions, settings, account_id, interval=60, full_age=timedelta(days=2))
    async with sessions.begin() as session:
        schedule = await session.get(SyncSchedule, account_id)
        schedule.full_sync_requested_at = BASE - timedelta(minutes=5)
    app = bootstrap(_replica(settings), engine=engine, clock=lambda: BASE)
    stop = asyncio.Event()
    task = asyncio.create_task(app.main(stop))
    try:
        await asyncio.sleep(2)
    finally:
        stop.set()
        await task
    sync_jobs = await _read_all(settings, SYNC_JOBS, account_id)
    assert [(m["kind"], m["reason"]) for m in sync_jobs] == [("full", "new_field")]
    assert sync_jobs[0]["job_id"] == f"{account_id}:full:2026-11-28T09:55:30Z"


async def test_r14_r18_a_manual_schedule_emits_nothing_while_a_due_account_beside_it_gets_its_job_once(
    settings, sessions, engine, account_id
) -> None:
    # Beside the manual account, one that is due: a scheduler that emits nothing fails
    # here, and so does one whose leader or standby emits the same job twice.
    due_id = f"{account_id}-due"
    async with sessions.begin() as session:
        session.add(Account(id=due_id, name=due_id))
    await _connected_account(sessions, settings, due_id, interval=1, full_age=timedelta(days=1))
    await _connected_account(sessions, settings, account_id, interval=1, full_age=timedelta(days=20))
    async with sessions.begin() as session:
        schedule = await session.get(SyncSchedule, account_id)
        schedule.mode = "manual"
    replica_settings = _replica(settings)
    replicas = [bootstrap(replica_settings, engine=engine, clock=lambda: BASE) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(replica.main(stop)) for replica in replicas]
    try:
        await asyncio.sleep(1.5)  # some 15 ticks of each replica, all in the same slot
        assert [replica.leader.is_leader for replica in replicas].count(True) == 1
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert await _read_all(settings, SYNC_JOBS, account_id) == []
    assert await _read_all(settings, OUTBOUND_JOBS, account_id) == []
    # The due account's one-minute tick at or before BASE, offset by its phase.
    one_minute = Schedule(ScheduleMode.INTERVAL, interval_minutes=1)
    slot = f"{tick_at_or_before(schedule=one_minute, moment=BASE, account_id=due_id):%Y-%m-%dT%H:%M:%SZ}"
    sync_jobs = await _read_all(settings, SYNC_JOBS, due_id)
    assert [(m["job_id"], m["kind"], m["reason"]) for m in sync_jobs] == [
        (f"{due_id}:incremental:{slot}", "incremental", "schedule")
    ]
    outbound = await _read_all(settings, OUTBOUND_JOBS, due_id)
    assert [m["job_id"] for m in outbound] == [f"{due_id}:scores_optouts:{slot}"]
    async with sessions() as session:
        recorded = (
            await session.execute(
                select(ScheduledJob.account_id, ScheduledJob.job_id).where(
                    ScheduledJob.account_id.in_([account_id, due_id])
                )
            )
        ).all()
    assert sorted(recorded) == [
        (due_id, f"{due_id}:incremental:{slot}"),
        (due_id, f"{due_id}:scores_optouts:{slot}"),
    ]
