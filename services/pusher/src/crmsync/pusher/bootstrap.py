"""The pusher's composition root: builds what was not passed in, connects nothing at import."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from crmsync.common.crm.factory import ConnectorFactory, connector_factory
from crmsync.common.crm.settings import ConnectorSettings
from crmsync.common.db.allowance import CallGateRegistry, call_gates_for
from crmsync.common.db.session import create_engine, create_sessionmaker, ping
from crmsync.common.domain.redelivery import RedeliveryPolicy
from crmsync.common.kafka.consumer import DeadLetters
from crmsync.common.kafka.producer import Publisher, create_producer
from crmsync.pusher.adapters.accounts import ConfigCache
from crmsync.pusher.adapters.crm import ConnectedCrm, Connectors, CrmWriter
from crmsync.pusher.adapters.dead_letters import KafkaDeadLetters
from crmsync.pusher.adapters.store import PgStore
from crmsync.pusher.entrypoints.service import run_consumers
from crmsync.pusher.handlers.context import PushContext
from crmsync.pusher.settings import Settings


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    crm_factory: ConnectorFactory
    # Connectors of re-deliveries: one try per attempt, the re-delivery's waits being the retries.
    resend_factory: ConnectorFactory
    # Only an engine the app created is disposed by it; one passed in belongs to the caller.
    owns_engine: bool = True
    # The accounts' API allowances the built factories spend from; closed at the end (leases go back).
    call_gates: CallGateRegistry | None = None

    def checks(self) -> dict[str, Callable[[], Awaitable[object]]]:
        return {"postgres": lambda: ping(self.engine), "kafka": Publisher(self.producer, self.settings).ping}

    def crm(self, factory: ConnectorFactory | None = None) -> ConnectedCrm:
        s = self.settings
        return ConnectedCrm(
            connectors=Connectors(factory or self.crm_factory),
            writer=CrmWriter(
                max_attempts=s.push_max_attempts,
                backoff_s=s.push_backoff_s,
                backoff_max_s=s.push_backoff_max_s,
                batch_size=s.push_crm_batch,
            ),
            concurrency=s.push_crm_concurrency,
            reconcile_margin=timedelta(seconds=s.push_reconcile_margin_s),
        )

    def context(
        self, crm: ConnectedCrm, dead_letters: DeadLetters, resend: ConnectedCrm | None = None
    ) -> PushContext:
        s = self.settings
        store = PgStore(
            create_sessionmaker(self.engine),
            autocommit=create_sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT")),
            configs=ConfigCache(ttl_s=s.push_config_ttl_s),
            outage_s=s.push_database_outage_s,
        )
        return PushContext(
            store=store,
            crm=crm,
            dead_letters=KafkaDeadLetters(dead_letters),
            lanes=s.push_lanes,
            redelivery=redelivery_policy(s),
            resend=resend,
            budget_recheck=timedelta(seconds=s.push_budget_recheck_s),
        )

    async def main(self, stop: asyncio.Event) -> None:
        """Runs the pusher's consumer loops until `stop`, then closes what the app opened."""
        crm, resend = self.crm(), self.crm(self.resend_factory)
        dead_letters = DeadLetters.via(self.producer)
        await self.producer.start()
        try:
            await run_consumers(
                self.settings, self.context(crm, dead_letters, resend), dead_letters=dead_letters, stop=stop
            )
        finally:
            await crm.aclose()
            await resend.aclose()
            if self.call_gates is not None:
                await self.call_gates.aclose()
            await self.producer.stop()
            if self.owns_engine:
                await self.engine.dispose()


def redelivery_policy(settings: Settings) -> RedeliveryPolicy:
    """Returns the re-delivery policy the settings describe (the cap and minimum follow a shorter base)."""
    s = settings
    base = timedelta(seconds=s.push_redelivery_base_s)
    return RedeliveryPolicy(
        base=base,
        cap=max(base, timedelta(seconds=s.push_redelivery_cap_s)),
        horizon=timedelta(seconds=s.push_redelivery_horizon_s),
        min_wait=min(base, timedelta(seconds=s.push_redelivery_min_wait_s)),
    )


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def bootstrap(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    crm_factory: ConnectorFactory | None = None,
    resend_factory: ConnectorFactory | None = None,
    producer: AIOKafkaProducer | None = None,
) -> App:
    settings = settings or Settings()
    secret = settings.secret_key.get_secret_value()
    owns_engine = engine is None
    engine = engine or create_engine(
        settings,
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
        # A ping costs two round trips per checkout, several per batch. A batch that
        # meets a dropped connection is handled again on fresh ones instead
        # (apply_contact_changes, and the record step of a push); it has no second effect (R18).
        pool_pre_ping=False,
    )
    # Every CRM request the built connectors send, retries included, spends the account's allowance.
    gates = call_gates_for(create_sessionmaker(engine)) if crm_factory is None else None
    return App(
        settings=settings,
        engine=engine,
        producer=producer or create_producer(settings),
        crm_factory=crm_factory or connector_factory(secret, call_gates=gates),
        # A factory passed in serves re-deliveries too, unless one is passed for them.
        resend_factory=resend_factory
        or crm_factory
        or connector_factory(secret, settings=ConnectorSettings(max_retries=0), call_gates=gates),
        owns_engine=owns_engine,
        call_gates=gates,
    )
