"""Scratch databases: a test (or a benchmark) that acts on whole tables gets a database of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from crmsync.common.db.migrate import upgrade


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def scratch_database(
    database_url: str, *, label: str, prefix: str = "crmsync_test"
) -> AsyncIterator[str]:
    """Creates a database beside `database_url`'s, migrated to head; yields its URL, drops it after."""
    server, _, _ = database_url.rpartition("/")
    name = f"{prefix}_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f'create database "{name}"')
        url = f"{server}/{name}"
        try:
            await asyncio.to_thread(upgrade, url)
            yield url
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()
