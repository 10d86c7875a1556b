"""A minimal service built from the shared plumbing, for the crash-safety tests.

It consumes sync jobs, and for each one waits PROBE_DELAY_S seconds (after
writing "started <job_id>" to PROBE_MARKER) and then stores the job id in
the table probe_deliveries. Run: python -m tests.support.probe_consumer
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from crmsync.common.db.session import create_engine, ping
from crmsync.common.kafka.consumer import ConsumerLoop, DeadLetters, Delivery, create_consumer
from crmsync.common.kafka.producer import create_producer
from crmsync.common.kafka.topics import SYNC_JOBS
from crmsync.common.messages import RunSync
from crmsync.common.observability.logging import configure_logging
from crmsync.common.service import run_service
from crmsync.common.settings import CommonSettings


async def amain() -> int:
    settings = CommonSettings()
    configure_logging(service="probe", json=True)
    delay = float(os.environ.get("PROBE_DELAY_S", "0"))
    marker = Path(os.environ["PROBE_MARKER"])
    engine = create_engine(settings, pool_size=2)
    producer = create_producer(settings)
    consumer = create_consumer(settings, SYNC_JOBS, group_id=os.environ["PROBE_GROUP"])

    async def handle(batch: Sequence[Delivery[Any]]) -> None:
        for delivery in batch:
            marker.write_text(f"started {delivery.message.job_id}\n")
            await asyncio.sleep(delay)
            async with engine.begin() as conn:
                await conn.execute(
                    text("insert into probe_deliveries (job_id) values (:job_id)"),
                    {"job_id": delivery.message.job_id},
                )
            marker.write_text(f"done {delivery.message.job_id}\n")

    async def main(stop: asyncio.Event) -> None:
        await producer.start()
        await consumer.start()
        try:
            loop = ConsumerLoop(
                consumer=consumer,
                models={settings.topic(SYNC_JOBS): RunSync},
                handler=handle,
                dead_letters=DeadLetters.via(producer),
                max_batch=1,
            )
            await loop.run(stop)
        finally:
            await consumer.stop()
            await producer.stop()
            await engine.dispose()

    return await run_service(
        name="probe", settings=settings, main=main, checks={"postgres": lambda: ping(engine)}
    )


if __name__ == "__main__":
    raise SystemExit(asyncio.run(amain()))
