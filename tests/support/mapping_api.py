"""Helpers for the mapping API tests: an app on the real database and Kafka, accounts, keys, messages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crmsync.common.settings import CommonSettings
from crmsync.mapping_api.bootstrap import bootstrap, transactions
from crmsync.mapping_api.handlers.admin import create_account, create_api_key
from crmsync.mapping_api.handlers.ports import CrmPort
from crmsync.mapping_api.settings import Settings


@dataclass(frozen=True)
class Tenant:
    account_id: str
    admin: dict[str, str]
    reader: dict[str, str]


async def new_tenant(sessions: async_sessionmaker[AsyncSession], *, name: str = "Acme") -> Tenant:
    """Returns a fresh account (as crmsync-admin creates it) with an admin and a reader key."""
    account_id = f"m-{uuid.uuid4().hex[:12]}"
    tx = transactions(sessions)
    await create_account(tx, name=name, account_id=account_id)
    admin = await create_api_key(tx, account_id=account_id, role="admin")
    reader = await create_api_key(tx, account_id=account_id, role="reader")
    return Tenant(
        account_id,
        {"Authorization": f"Bearer {admin}"},
        {"Authorization": f"Bearer {reader}"},
    )


def api_settings(settings: CommonSettings) -> Settings:
    return Settings(**settings.model_dump())


@asynccontextmanager
async def running_api(
    settings: CommonSettings, *, engine: AsyncEngine, crm: CrmPort | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Yields a client of the app with its lifespan (producer, outbox relay) running."""
    app = bootstrap(api_settings(settings), engine=engine, crm=crm)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def read_messages(
    settings: CommonSettings, topic: str, *, key: bytes, count: int = 1, wait_s: float = 30.0
) -> list[dict[str, Any]]:
    """Returns the first `count` messages with `key` on a topic (short name), waiting up to wait_s."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"mapping-api-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while len(found) < count and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found.extend(orjson.loads(r.value) for r in records if r.key == key)
    finally:
        await consumer.stop()
    return found[:count] if len(found) >= count else found
