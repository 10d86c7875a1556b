"""The mapping API's composition root: settings, database, unit of work, stores, CRM port, outbox relay.

`build()` wires everything not passed in and connects nothing: the engine
connects on first use, and the Kafka producer (which binds to the running event
loop) and the relay are made when the app starts (`Services.running`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crmsync.common.crypto import SecretBox
from crmsync.common.db.allowance import CallGateRegistry, call_gates_for
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.db.unit_of_work import UnitOfWork
from crmsync.common.kafka.outbox import OutboxRelay
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.common.service import DEPENDENCY_ERRORS, ReadinessCheck
from crmsync.mapping_api.adapters.crm import ConnectorPort
from crmsync.mapping_api.adapters.unit_of_work import PostgresTransactions
from crmsync.mapping_api.entrypoints.app import create_app
from crmsync.mapping_api.handlers.ports import CrmPort
from crmsync.mapping_api.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class OutboxWakeUp:
    """Asks the running relay to publish now; before the app starts there is none to ask."""

    relay: OutboxRelay | None = None
    publisher: Publisher | None = None

    def __call__(self) -> None:
        if self.relay is not None:
            self.relay.notify()


@dataclass
class Services:
    """What the entry points use: the unit of work (as the handlers' `Transactions`), the CRM, secrets."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tx: PostgresTransactions
    crm: CrmPort
    secret_box: SecretBox
    owns_engine: bool = True
    outbox: OutboxWakeUp = field(default_factory=OutboxWakeUp)
    # The accounts' API allowances the built CRM port spends from; closed at the end (leases go back).
    call_gates: CallGateRegistry | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Runs the Kafka producer and the outbox relay for as long as the block lasts."""
        settings = self.settings
        producer = create_producer(settings)
        publisher = Publisher(producer, settings)
        relay = OutboxRelay(sessions=self.sessions, publisher=publisher)
        await producer.start()
        self.outbox.relay, self.outbox.publisher = relay, publisher
        stop = asyncio.Event()
        relay_task = asyncio.create_task(relay.run(stop), name="outbox-relay")
        try:
            yield
        finally:
            stop.set()
            relay.notify()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(relay_task, settings.shutdown_timeout_s)
            # Publish what the last requests committed; what Kafka or PostgreSQL refuses now stays
            # in the outbox for the next start.
            try:
                await asyncio.wait_for(relay.publish_pending(), settings.shutdown_timeout_s)
            except DEPENDENCY_ERRORS as exc:
                log.warning("outbox_left_for_next_start", error=str(exc)[:300])
            self.outbox.relay = self.outbox.publisher = None
            await producer.stop()
            if self.call_gates is not None:
                await self.call_gates.aclose()
            if self.owns_engine:
                await self.engine.dispose()

    def checks(self) -> dict[str, ReadinessCheck]:
        """Returns the readiness checks: PostgreSQL answers, the Kafka cluster answers."""

        async def kafka() -> None:
            if self.outbox.publisher is None:
                raise RuntimeError("not started")
            await self.outbox.publisher.ping()

        return {"postgres": lambda: ping(self.engine), "kafka": kafka}


def transactions(
    sessions: async_sessionmaker[AsyncSession], *, wake_outbox: OutboxWakeUp | None = None
) -> PostgresTransactions:
    """Returns the handlers' unit of work over these sessions."""
    return PostgresTransactions(UnitOfWork(sessions, wake_outbox=wake_outbox))


def build(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    crm: CrmPort | None = None,
    pool_size: int | None = None,
) -> Services:
    """Returns the services with everything not passed in built from settings; nothing connects yet."""
    settings = settings or Settings()
    # An engine passed in belongs to the caller (tests share one), so only ours is disposed.
    owns_engine = engine is None
    if engine is None:
        pool = {"pool_size": pool_size, "max_overflow": 0} if pool_size else {}
        engine = create_engine(settings, **pool)
    sessions = create_sessionmaker(engine)
    secret_box = SecretBox(settings.secret_key.get_secret_value())
    wake = OutboxWakeUp()
    gates = call_gates_for(sessions) if crm is None else None
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        tx=transactions(sessions, wake_outbox=wake),
        crm=crm or ConnectorPort(secret_box=secret_box, call_gates=gates),
        secret_box=secret_box,
        owns_engine=owns_engine,
        outbox=wake,
        call_gates=gates,
    )


def bootstrap(
    settings: Settings | None = None, *, engine: AsyncEngine | None = None, crm: CrmPort | None = None
) -> FastAPI:
    """Returns the HTTP app over the services `build` wires; nothing connects until it starts."""
    return create_app(build(settings, engine=engine, crm=crm))
