"""The puller's process loop: the jobs consumer, the workers, the outbox relay and the queue's metrics
side by side until `stop`.

A task that dies (a bug) stops the other one and its error ends the process;
on `stop`, runs stop between batches and are requeued, and one stuck in a CRM
call past the grace period is cancelled and resumed by the next process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.startup import start_when_reachable
from crmsync.puller.entrypoints.jobs_consumer import run_jobs_consumer
from crmsync.puller.entrypoints.queue_metrics import run_queue_metrics
from crmsync.puller.entrypoints.workers import Workers
from crmsync.puller.handlers.ports import JobStore, RunQueue
from crmsync.puller.settings import Settings


async def run_puller(
    stop: asyncio.Event,
    *,
    settings: Settings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    jobs: JobStore,
    workers: Callable[[asyncio.Event], Workers],
    relay: OutboxRelay,
    queue: RunQueue,
) -> None:
    """Runs the consumer, the workers and the relay until `stop` or until one of them fails (raised here)."""
    pool = workers(stop)
    if not await start_when_reachable(producer, stop=stop, what="kafka producer"):
        return
    try:
        if not await start_when_reachable(consumer, stop=stop, what="kafka consumer"):
            return
        try:
            await _run_until_stopped(
                stop,
                settings=settings,
                consumer=consumer,
                producer=producer,
                jobs=jobs,
                pool=pool,
                relay=relay,
                queue=queue,
            )
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def _run_until_stopped(
    stop: asyncio.Event,
    *,
    settings: Settings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    jobs: JobStore,
    pool: Workers,
    relay: OutboxRelay,
    queue: RunQueue,
) -> None:
    tasks = [
        asyncio.create_task(
            run_jobs_consumer(
                stop,
                settings=settings,
                consumer=consumer,
                producer=producer,
                jobs=jobs,
                on_new_jobs=pool.notify,
            ),
            name="puller-consumer",
        ),
        asyncio.create_task(pool.run(stop), name="puller-workers"),
        # Drift repairs the runs hand to the pusher (R25).
        asyncio.create_task(relay.run(stop), name="puller-outbox"),
        # What the autoscaler reads (R26).
        asyncio.create_task(
            run_queue_metrics(stop, queue=queue, interval_s=settings.puller_queue_metrics_s),
            name="puller-queue-metrics",
        ),
    ]
    stop_wait = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        stop_wait.cancel()
        grace = max(1.0, settings.shutdown_timeout_s - 3)
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The first failure, whether it ended the loop or came while stopping, ends the process.
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
