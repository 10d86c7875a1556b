"""The puller's composition root: builds what was not passed in, connects nothing at import.

`bootstrap()` wires the adapters to the use cases and the entry points; the
process loop itself is `entrypoints.process.run_puller`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crmsync.common.clock import utc_now
from crmsync.common.crm.factory import ConnectorFactory, connector_factory
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.db.allowance import CallGateRegistry, call_gates_for
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.kafka.consumer import create_consumer
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.puller.adapters.store import PgJobStore, PgRunQueue, PgSyncStore, account_lock
from crmsync.puller.entrypoints.process import run_puller
from crmsync.puller.entrypoints.workers import Workers
from crmsync.puller.handlers.run_sync import SyncRunner
from crmsync.puller.settings import Settings


def crm_connectors(settings: Settings, *, call_gates: CallGateRegistry | None = None) -> ConnectorFactory:
    """Returns the factory of CRM connectors the puller's settings ask for, spending each account's
    API allowance through `call_gates` when given."""
    connectors = ConnectorSettings(
        bulk_threshold=settings.puller_bulk_threshold, change_lookback_s=settings.puller_lookback_s
    )
    return connector_factory(
        settings.secret_key.get_secret_value(), settings=connectors, call_gates=call_gates
    )


def sync_runner(
    *,
    sessions: async_sessionmaker[AsyncSession],
    crm_factory: ConnectorFactory,
    settings: Settings,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utc_now,
    wake_outbox: Callable[[], None] | None = None,
) -> SyncRunner:
    """Returns the sync use case over the database behind `sessions`.

    Drift repairs go through the outbox; `wake_outbox` asks its relay to publish them at once.
    """
    return SyncRunner(
        store=PgSyncStore(UnitOfWork(sessions, wake_outbox=wake_outbox)),
        crm_factory=crm_factory,
        settings=settings,
        stop=stop,
        clock=clock,
    )


def workers(
    *, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], runner: SyncRunner, settings: Settings
) -> Workers:
    """Returns the workers that take runs from the database behind `engine` and `sessions`."""
    return Workers(
        queue=PgRunQueue(UnitOfWork(sessions)),
        lock_for=partial(account_lock, engine),
        runner=runner,
        concurrency=settings.puller_concurrency,
        incremental_slots=settings.puller_incremental_slots,
        poll_s=settings.puller_poll_s,
    )


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    crm_factory: ConnectorFactory
    consumer: AIOKafkaConsumer | None = None
    clock: Callable[[], datetime] = utc_now
    # An engine passed in belongs to the caller, who disposes of it.
    owns_engine: bool = True
    call_gates: CallGateRegistry | None = None

    def checks(self) -> dict:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    async def main(self, stop: asyncio.Event) -> None:
        """Runs the puller until `stop`."""
        sessions = create_sessionmaker(self.engine)
        settings = self.settings
        relay = OutboxRelay(sessions=sessions, publisher=Publisher(self.producer, settings))

        def pool(stop: asyncio.Event) -> Workers:
            runner = sync_runner(
                sessions=sessions,
                crm_factory=self.crm_factory,
                settings=settings,
                stop=stop,
                clock=self.clock,
                wake_outbox=relay.notify,
            )
            return workers(engine=self.engine, sessions=sessions, runner=runner, settings=settings)

        try:
            await run_puller(
                stop,
                settings=settings,
                consumer=self.consumer
                or create_consumer(settings, SYNC_JOBS, group_id=settings.puller_group_id),
                producer=self.producer,
                jobs=PgJobStore(UnitOfWork(sessions)),
                workers=pool,
                relay=relay,
                queue=PgRunQueue(UnitOfWork(sessions)),
            )
        finally:
            if self.call_gates is not None:
                await self.call_gates.aclose()  # the calls leased and not spent go back
            if self.owns_engine:
                await self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    crm_factory: ConnectorFactory | None = None,
    producer: AIOKafkaProducer | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> App:
    """Returns the puller wired from `settings`, with whatever was passed in used as it is."""
    settings = settings or Settings()
    owns_engine = engine is None
    engine = engine or create_engine(settings)
    gates = call_gates_for(create_sessionmaker(engine)) if crm_factory is None else None
    return App(
        settings=settings,
        engine=engine,
        producer=producer or create_producer(settings),
        crm_factory=crm_factory or crm_connectors(settings, call_gates=gates),
        clock=clock,
        owns_engine=owns_engine,
        call_gates=gates,
    )
