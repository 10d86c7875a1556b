"""The mapping API's composition root: settings, database, Kafka, the outbox relay, the CRM port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.crypto import SecretBox
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.service import health_routes
from crmsync.mapping_api.adapters.crm import ConnectorPort
from crmsync.mapping_api.entrypoints import errors, metrics
from crmsync.mapping_api.entrypoints.routes import api_router
from crmsync.mapping_api.handlers.ports import CrmPort
from crmsync.mapping_api.settings import Settings

DESCRIPTION = """
Configuration of crmsync for one account (tenant): the CRM connection, the field
mapping, the push policy and the sync schedule; Sync Now; the CRM's entities;
contacts and segments; sync-run history and the push log.

Every call needs `Authorization: Bearer <key>` with a key from
`crmsync-admin key create`. Everything is scoped to the key's account (R21);
reader keys read, admin keys also write. Errors are JSON bodies that name the
offending field (R22).
"""


def bootstrap(
    settings: Settings | None = None, *, engine: AsyncEngine | None = None, crm: CrmPort | None = None
) -> FastAPI:
    """Returns the app with everything not passed in built from settings; nothing connects yet."""
    settings = settings or Settings()
    # An engine passed in belongs to the caller (tests share one), so only ours is disposed.
    owns_engine = engine is None
    engine = engine or create_engine(settings)
    sessions = create_sessionmaker(engine)
    secret_box = SecretBox(settings.secret_key.get_secret_value())
    # aiokafka binds a producer to the running loop, so it is built when the app starts.
    wired: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = create_producer(settings)
        publisher = Publisher(producer, settings)
        relay = OutboxRelay(sessions=sessions, publisher=publisher)
        wired["publisher"] = publisher
        app.state.relay = relay
        await producer.start()
        stop = asyncio.Event()
        relay_task = asyncio.create_task(relay.run(stop), name="outbox-relay")
        try:
            yield
        finally:
            stop.set()
            relay.notify()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(relay_task, settings.shutdown_timeout_s)
            # Publish what the last requests committed; whatever fails stays for the next start.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(relay.publish_pending(), settings.shutdown_timeout_s)
            await producer.stop()
            if owns_engine:
                await engine.dispose()

    async def kafka_ready() -> None:
        publisher = wired.get("publisher")
        if not isinstance(publisher, Publisher):
            raise RuntimeError("not started")
        await publisher.ping()

    app = FastAPI(
        title="crmsync mapping API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    metrics.install(app)
    app.include_router(api_router)
    checks = {"postgres": lambda: ping(engine), "kafka": kafka_ready}
    app.router.routes.extend(health_routes(service="mapping-api", checks=checks))
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.secret_box = secret_box
    app.state.crm = crm or ConnectorPort(secret_box=secret_box)
    return app
