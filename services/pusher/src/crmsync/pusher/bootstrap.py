"""The pusher's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.kafka.consumer import DeadLetters, create_consumer
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.kafka.topics import CONTACT_CHANGES, OUTBOUND_JOBS
from crmsync.common.messages import ContactChanged, RunOutbound
from crmsync.pusher.adapters.crm import ConnectorFactory, Connectors, CrmWriter
from crmsync.pusher.adapters.store import ConfigCache
from crmsync.pusher.entrypoints.consumer import LingeringLoop, PipelinedLoop
from crmsync.pusher.handlers.contact_changed import AppliedBatch, PushContext, apply_contact_changes
from crmsync.pusher.handlers.run_outbound import handle_outbound_jobs
from crmsync.pusher.settings import Settings


def default_crm_factory(settings: Settings) -> ConnectorFactory:
    """Returns a factory of Salesforce connectors for stored connection rows."""
    box = SecretBox(settings.secret_key.get_secret_value())

    def build(connection: CrmConnection) -> Any:
        from crmsync.common.crm.factory import connector_for

        return connector_for(connection, secret_box=box)

    return build


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    crm_factory: ConnectorFactory
    _connectors: Connectors | None = field(default=None, repr=False)

    def checks(self) -> dict[str, Callable[[], Awaitable[object]]]:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    def context(self) -> PushContext:
        s = self.settings
        self._connectors = self._connectors or Connectors(self.crm_factory)
        return PushContext(
            sessions=create_sessionmaker(self.engine),
            autocommit=create_sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT")),
            connectors=self._connectors,
            writer=CrmWriter(
                max_attempts=s.push_max_attempts,
                backoff_s=s.push_backoff_s,
                backoff_max_s=s.push_backoff_max_s,
                batch_size=s.push_crm_batch,
            ),
            dead_letters=DeadLetters.via(self.producer),
            concurrency=s.push_crm_concurrency,
            reconcile_margin=timedelta(seconds=s.push_reconcile_margin_s),
            lanes=s.push_lanes,
            configs=ConfigCache(ttl_s=s.push_config_ttl_s),
        )

    async def main(self, stop: asyncio.Event) -> None:
        """Consumes contact changes and outbound jobs until `stop`; the batches in hand finish first."""
        s = self.settings
        await self.producer.start()
        ctx = self.context()
        consumers = {
            CONTACT_CHANGES: create_consumer(
                s, CONTACT_CHANGES, group_id=s.pusher_group_id, max_poll_records=s.push_max_batch
            ),
            OUTBOUND_JOBS: create_consumer(s, OUTBOUND_JOBS, group_id=s.outbound_group_id),
        }
        tasks: list[asyncio.Task[None]] = []
        try:
            for consumer in consumers.values():
                await consumer.start()
            loops = {
                CONTACT_CHANGES: PipelinedLoop[AppliedBatch](
                    consumer=consumers[CONTACT_CHANGES],
                    models={s.topic(CONTACT_CHANGES): ContactChanged},
                    apply=lambda deliveries, wait: apply_contact_changes(
                        ctx, deliveries, before_reconcile=wait
                    ),
                    push=lambda applied: applied.push(ctx),
                    must_wait=lambda applied, deliveries: applied.blocks(deliveries),
                    overlap_from=s.push_overlap_from,
                    dead_letters=ctx.dead_letters,
                    max_batch=s.push_max_batch,
                    linger_ms=s.push_linger_ms,
                ),
                OUTBOUND_JOBS: LingeringLoop(
                    consumer=consumers[OUTBOUND_JOBS],
                    models={s.topic(OUTBOUND_JOBS): RunOutbound},
                    handler=partial(handle_outbound_jobs, ctx),
                    dead_letters=ctx.dead_letters,
                    max_batch=10,
                    linger_ms=0,
                ),
            }
            for topic, loop in loops.items():
                tasks.append(asyncio.create_task(loop.run(stop), name=f"pusher-{topic}"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a handler's bug stops the process loudly
            stop.set()
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            for consumer in consumers.values():
                await consumer.stop()
            await ctx.connectors.aclose()
            await self.producer.stop()
            await self.engine.dispose()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    crm_factory: ConnectorFactory | None = None,
    producer: AIOKafkaProducer | None = None,
) -> App:
    settings = settings or Settings()
    return App(
        settings=settings,
        engine=engine
        or create_engine(
            settings,
            json_serializer=_json_text,
            json_deserializer=orjson.loads,
            # A ping costs two round trips per checkout, several per batch. A batch that
            # meets a dropped connection is handled again on fresh ones instead
            # (apply_contact_changes, and the record step of a push); it has no second effect (R18).
            pool_pre_ping=False,
        ),
        producer=producer or create_producer(settings),
        crm_factory=crm_factory or default_crm_factory(settings),
    )
