"""The mapping API's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from crmsync.common.db.session import create_engine, ping
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.service import health_routes
from crmsync.mapping_api.settings import Settings


def bootstrap(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = create_engine(settings)
    producer = create_producer(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()
            await engine.dispose()

    app = FastAPI(title="crmsync mapping API", version="0.1.0", lifespan=lifespan)
    checks = {"postgres": lambda: ping(engine), "kafka": Publisher(producer, settings).ping}
    app.router.routes.extend(health_routes(service="mapping-api", checks=checks))
    app.state.settings = settings
    return app
