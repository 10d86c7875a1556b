"""The Kafka side: sync jobs in, sync runs recorded, offsets committed after the record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from crmsync.common.kafka.consumer import ConsumerLoop, DeadLetters, Delivery
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.common.messages import RunSync
from crmsync.common.service import DEPENDENCY_ERRORS
from crmsync.common.settings import CommonSettings
from crmsync.puller.domain.errors import StoreUnavailable
from crmsync.puller.handlers.ports import JobStore
from crmsync.puller.handlers.record_job import record_jobs


async def run_jobs_consumer(
    stop: asyncio.Event,
    *,
    settings: CommonSettings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    jobs: JobStore,
    on_new_jobs: Callable[[], None],
) -> None:
    """Runs until `stop`: each batch of jobs is recorded in one transaction, then committed.

    While the database or the broker is away, the batch in hand waits and is tried again.
    """

    async def handle(batch: Sequence[Delivery[Any]]) -> None:
        if await record_jobs(store=jobs, jobs=[d.message for d in batch]):
            on_new_jobs()

    loop = ConsumerLoop(
        consumer=consumer,
        models={settings.topic(SYNC_JOBS): RunSync},
        handler=handle,
        dead_letters=DeadLetters.via(producer),
        transient=(*DEPENDENCY_ERRORS, StoreUnavailable),
    )
    await loop.run(stop)
