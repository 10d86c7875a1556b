"""The puller's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.db.session import create_engine, ping
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.puller.settings import Settings


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer

    def checks(self) -> dict:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    async def main(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        try:
            await stop.wait()
        finally:
            await self.producer.stop()
            await self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    producer: AIOKafkaProducer | None = None,
) -> App:
    settings = settings or Settings()
    return App(
        settings=settings,
        engine=engine or create_engine(settings),
        producer=producer or create_producer(settings),
    )
