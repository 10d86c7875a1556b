"""The puller's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.crm.factory import connector_for
from crmsync.common.crm.salesforce import ConnectorOptions
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.kafka.consumer import create_consumer
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.puller.entrypoints.jobs_consumer import run_jobs_consumer
from crmsync.puller.entrypoints.workers import Workers
from crmsync.puller.handlers.run_sync import CrmFactory, SyncRunner, utc_now
from crmsync.puller.settings import Settings


def default_crm_factory(settings: Settings) -> CrmFactory:
    """Returns a factory of Salesforce connectors that open the stored credentials with the secret key."""
    box = SecretBox(settings.secret_key.get_secret_value())
    options = ConnectorOptions(bulk_threshold=settings.puller_bulk_threshold)

    def factory(connection: CrmConnection):  # type: ignore[no-untyped-def]
        return connector_for(connection, secret_box=box, options=options)

    return factory


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    crm_factory: CrmFactory
    consumer: AIOKafkaConsumer | None = None
    clock: Callable[[], datetime] = utc_now
    owns_engine: bool = True

    def checks(self) -> dict:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    async def main(self, stop: asyncio.Event) -> None:
        sessions = create_sessionmaker(self.engine)
        consumer = self.consumer or create_consumer(
            self.settings, SYNC_JOBS, group_id=self.settings.puller_group_id
        )
        runner = SyncRunner(
            sessions=sessions,
            crm_factory=self.crm_factory,
            settings=self.settings,
            stop=stop,
            clock=self.clock,
        )
        workers = Workers(
            engine=self.engine,
            sessions=sessions,
            runner=runner,
            concurrency=self.settings.puller_concurrency,
            poll_s=self.settings.puller_poll_s,
        )
        await self.producer.start()
        await consumer.start()
        tasks = [
            asyncio.create_task(
                run_jobs_consumer(
                    stop,
                    settings=self.settings,
                    consumer=consumer,
                    producer=self.producer,
                    sessions=sessions,
                    on_new_jobs=workers.notify,
                ),
                name="puller-consumer",
            ),
            asyncio.create_task(workers.run(stop), name="puller-workers"),
        ]
        stop_wait = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            stop_wait.cancel()
            # Runs stop between batches; one stuck in a CRM call is cancelled and resumed by the next process.
            grace = max(1.0, self.settings.shutdown_timeout_s - 3)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await consumer.stop()
            await self.producer.stop()
            if self.owns_engine:
                await self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    crm_factory: CrmFactory | None = None,
    producer: AIOKafkaProducer | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> App:
    settings = settings or Settings()
    return App(
        settings=settings,
        engine=engine or create_engine(settings),
        producer=producer or create_producer(settings),
        crm_factory=crm_factory or default_crm_factory(settings),
        clock=clock,
        owns_engine=engine is None,
    )
