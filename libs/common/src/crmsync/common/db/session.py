"""Engines and sessions. Built by each service's bootstrap, never at import time."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from crmsync.common.settings import CommonSettings


def create_engine(settings: CommonSettings, **overrides: object) -> AsyncEngine:
    """Returns an asyncpg engine for settings.database_url."""
    options: dict[str, object] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_pool_size,
        "pool_pre_ping": True,
        # A server that does not answer (a host down, not a refused port) fails a connect after
        # this many seconds rather than asyncpg's 60, so a loop waiting out an outage tries again sooner.
        "connect_args": {"server_settings": {"application_name": settings.kafka_client_id}, "timeout": 10},
    }
    options.update(overrides)
    return create_async_engine(settings.database_url, **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Returns a session factory; use `async with factory.begin() as session` per use case."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raises unless the database answers."""
    async with engine.connect() as conn:
        await conn.execute(text("select 1"))
