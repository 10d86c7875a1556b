"""The scheduler's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.scheduler.adapters.leader import AdvisoryLockLeader
from crmsync.scheduler.entrypoints.leader_loop import run_leader_loop, utc_now
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
    clock: Callable[[], datetime] = utc_now
    owns_engine: bool = True
    leader: AdvisoryLockLeader = field(init=False)

    def __post_init__(self) -> None:
        self.leader = AdvisoryLockLeader(engine=self.engine, key=self.settings.scheduler_lock_key)

    def checks(self) -> dict:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    async def main(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        try:
            await run_leader_loop(
                stop,
                sessions=create_sessionmaker(self.engine),
                leader=self.leader,
                relay=OutboxRelay(
                    sessions=create_sessionmaker(self.engine),
                    publisher=Publisher(self.producer, self.settings),
                ),
                housekeeping=Housekeeping(
                    sessions=create_sessionmaker(self.engine),
                    retention=retention(self.settings),
                    interval_s=self.settings.housekeeping_interval_s,
                    batch_rows=self.settings.housekeeping_batch_rows,
                    batches_per_tick=self.settings.housekeeping_batches_per_tick,
                ),
                tick_s=self.settings.scheduler_tick_s,
                clock=self.clock,
            )
        finally:
            await self.producer.stop()
            if self.owns_engine:
                await self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    producer: AIOKafkaProducer | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> App:
    settings = settings or Settings()
    return App(
        settings=settings,
        engine=engine or create_engine(settings),
        producer=producer or create_producer(settings),
        clock=clock,
        owns_engine=engine is None,
    )
