"""The scheduler's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.clock import utc_now
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.service import ReadinessCheck
from crmsync.scheduler.adapters.history import PostgresHistory
from crmsync.scheduler.adapters.leader import AdvisoryLockLeader
from crmsync.scheduler.adapters.repository import PostgresJobStore
from crmsync.scheduler.adapters.transactions import InTransaction
from crmsync.scheduler.entrypoints.leader_loop import LeaderLoop, serve
from crmsync.scheduler.handlers.purge_history import Housekeeping, Retention
from crmsync.scheduler.settings import Settings


def retention(settings: Settings) -> Retention:
    return Retention(
        sync_runs=timedelta(days=settings.retention_sync_runs_days),
        push_log=timedelta(days=settings.retention_push_log_days),
        scheduled_jobs=timedelta(days=settings.retention_scheduled_jobs_days),
        outbox=timedelta(hours=settings.retention_outbox_hours),
    )


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    leader: AdvisoryLockLeader
    loop: LeaderLoop
    owns_engine: bool

    def checks(self) -> dict[str, ReadinessCheck]:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    async def main(self, stop: asyncio.Event) -> None:
        # An engine passed in belongs to the caller (tests share one), so only ours is disposed.
        await serve(
            stop,
            loop=self.loop,
            producer=self.producer,
            owned_engine=self.engine if self.owns_engine else None,
        )


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    producer: AIOKafkaProducer | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> App:
    """Returns the scheduler with everything not passed in built from settings; nothing connects yet."""
    settings = settings or Settings()
    owns_engine = engine is None
    engine = engine or create_engine(settings)
    producer = producer or create_producer(settings)
    sessions = create_sessionmaker(engine)
    # A batch of the relay holds the jobs of a batch of accounts (a sync job and an outbound job each).
    relay = OutboxRelay(
        sessions=sessions,
        publisher=Publisher(producer, settings),
        batch=2 * settings.scheduler_accounts_per_batch,
    )
    leader = AdvisoryLockLeader(engine=engine, key=settings.scheduler_lock_key)
    loop = LeaderLoop(
        leader=leader,
        jobs=InTransaction(UnitOfWork(sessions, wake_outbox=relay.notify), PostgresJobStore),
        outbox=relay,
        housekeeping=Housekeeping(
            history=InTransaction(UnitOfWork(sessions), PostgresHistory),
            retention=retention(settings),
            interval_s=settings.housekeeping_interval_s,
            batch_rows=settings.housekeeping_batch_rows,
            batches_per_tick=settings.housekeeping_batches_per_tick,
        ),
        tick_s=settings.scheduler_tick_s,
        accounts_per_batch=settings.scheduler_accounts_per_batch,
        open_run_recheck=timedelta(seconds=settings.scheduler_open_run_recheck_s),
        clock=clock,
    )
    return App(settings, engine, producer, leader, loop, owns_engine)
