"""Test data: mapping versions stored the way the mapping API stores them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crmsync.common.db.schema import MappingVersion
from crmsync.common.domain.mapping import MappingRow
from crmsync.mapping_api.adapters.mappings import add_mapping_version


async def store_mapping(
    sessions: async_sessionmaker[AsyncSession], *, account_id: str, rows: Sequence[MappingRow]
) -> int:
    """Returns the number of the new version holding `rows`, saved without the API's rule checks."""
    async with sessions.begin() as session:
        newest = await session.scalar(
            select(func.max(MappingVersion.version)).where(MappingVersion.account_id == account_id)
        )
        stored = await add_mapping_version(
            session, account_id=account_id, version=(newest or 0) + 1, note=None, rows=rows
        )
        return stored.version
