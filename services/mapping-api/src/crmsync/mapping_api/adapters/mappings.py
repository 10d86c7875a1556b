"""Mapping versions and the push policy in PostgreSQL, read through `crmsync.common.db.account_config`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.account_config import StoredMapping, load_mapping, load_policy
from crmsync.common.db.schema import MappingRowRecord, MappingVersion
from crmsync.common.db.schema import PushPolicy as PushPolicyRecord
from crmsync.common.domain.mapping import MappingRow, PushPolicy
from crmsync.mapping_api.adapters.rows import SessionStore
from crmsync.mapping_api.values import VersionSummary


async def add_mapping_version(
    session: AsyncSession, *, account_id: str, version: int, note: str | None, rows: Sequence[MappingRow]
) -> MappingVersion:
    """Returns a new stored version of the account's mapping holding `rows`, in order."""
    record = MappingVersion(account_id=account_id, version=version, note=note)
    session.add(record)
    await session.flush()
    session.add_all(
        MappingRowRecord(
            account_id=account_id,
            mapping_version_id=record.id,
            position=position,
            destination=row.destination,
            kind=row.kind.value,
            lead_source=row.lead_source,
            contact_source=row.contact_source,
            data_type=row.data_type.value,
            allow_push=row.allow_push,
        )
        for position, row in enumerate(rows)
    )
    return record


class PostgresMappings(SessionStore):
    async def get(self, account_id: str, version: int | None = None) -> StoredMapping | None:
        return await load_mapping(self._session, account_id=account_id, version=version)

    async def add(
        self, *, account_id: str, version: int, note: str | None, rows: Sequence[MappingRow]
    ) -> StoredMapping:
        record = await add_mapping_version(
            self._session, account_id=account_id, version=version, note=note, rows=rows
        )
        await self._session.flush()
        await self._session.refresh(record)
        return StoredMapping(record.version, note, record.created_at, tuple(rows))

    async def versions(self, account_id: str) -> list[VersionSummary]:
        counts = (
            select(MappingRowRecord.mapping_version_id, func.count().label("n"))
            .where(MappingRowRecord.account_id == account_id)
            .group_by(MappingRowRecord.mapping_version_id)
            .subquery()
        )
        result = await self._session.execute(
            select(MappingVersion, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.mapping_version_id == MappingVersion.id)
            .where(MappingVersion.account_id == account_id)
            .order_by(MappingVersion.version.desc())
        )
        return [VersionSummary(v.version, v.note, v.created_at, int(n)) for v, n in result.all()]


class PostgresPolicies(SessionStore):
    async def get(self, account_id: str) -> PushPolicy:
        return await load_policy(self._session, account_id=account_id)

    async def put(self, account_id: str, policy: PushPolicy, *, updated_at: datetime) -> None:
        record = await self._session.get(PushPolicyRecord, account_id)
        if record is None:
            record = PushPolicyRecord(account_id=account_id)
            self._session.add(record)
        record.default_allow_push = policy.default_allow_push
        record.updated_at = updated_at
        await self._session.flush()
