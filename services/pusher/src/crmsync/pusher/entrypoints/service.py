"""The pusher's process loops: contact changes (pipelined) and outbound jobs, each in its own group,
and the re-delivery of waiting pushes (`entrypoints.redelivery`).

They run until `stop`; the batches in hand finish first. A handler's bug
stops every loop and is raised: the process restarts and the batch comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from aiokafka import AIOKafkaConsumer

from crmsync.common.kafka.consumer import DeadLetters, create_consumer
from crmsync.common.kafka.topics import CONTACT_CHANGES, OUTBOUND_JOBS
from crmsync.common.messages import ContactChanged, RunOutbound
from crmsync.pusher.entrypoints.consumer import LingeringLoop, PipelinedLoop
from crmsync.pusher.entrypoints.redelivery import run_redelivery
from crmsync.pusher.handlers.contact_changed import AppliedBatch, PushContext, apply_contact_changes
from crmsync.pusher.handlers.run_outbound import handle_outbound_jobs
from crmsync.pusher.settings import Settings


def _loops(
    settings: Settings,
    ctx: PushContext,
    consumers: dict[str, AIOKafkaConsumer],
    dead_letters: DeadLetters,
) -> dict[str, LingeringLoop]:
    s = settings
    return {
        CONTACT_CHANGES: PipelinedLoop[AppliedBatch](
            consumer=consumers[CONTACT_CHANGES],
            models={s.topic(CONTACT_CHANGES): ContactChanged},
            apply=lambda deliveries, wait: apply_contact_changes(ctx, deliveries, before_reconcile=wait),
            push=lambda applied: applied.push(ctx),
            must_wait=lambda applied, deliveries: applied.blocks(deliveries),
            overlap_from=s.push_overlap_from,
            dead_letters=dead_letters,
            max_batch=s.push_max_batch,
            linger_ms=s.push_linger_ms,
        ),
        OUTBOUND_JOBS: LingeringLoop(
            consumer=consumers[OUTBOUND_JOBS],
            models={s.topic(OUTBOUND_JOBS): RunOutbound},
            handler=partial(handle_outbound_jobs, ctx),
            dead_letters=dead_letters,
            max_batch=10,
            linger_ms=0,
        ),
    }


async def run_consumers(
    settings: Settings, ctx: PushContext, *, dead_letters: DeadLetters, stop: asyncio.Event
) -> None:
    """Consumes contact changes and outbound jobs, and re-delivers waiting pushes, until `stop`."""
    s = settings
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
        for topic, loop in _loops(s, ctx, consumers, dead_letters).items():
            tasks.append(asyncio.create_task(loop.run(stop), name=f"pusher-{topic}"))
        if s.push_redelivery_enabled:
            tasks.append(asyncio.create_task(run_redelivery(s, ctx, stop=stop), name="pusher-redelivery"))
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
