"""The one loader of an account's configuration: mapping, push policy and CRM connection.

Every service reads an account's configuration through these functions, so a
mapping means the same thing to the API that saved it, the puller that pulls
with it and the pusher that pushes with it. They take the caller's session
and never commit.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.crm.providers import DEFAULT_PROVIDER, provider_named
from crmsync.common.db.schema import CrmConnection, MappingRowRecord, MappingVersion
from crmsync.common.db.schema import PushPolicy as PushPolicyRecord
from crmsync.common.domain.account import AccountConfig, CrmConnectionInfo, StoredMapping
from crmsync.common.domain.fields import DataType
from crmsync.common.domain.mapping import FieldKind, Mapping, MappingRow, PushPolicy

__all__ = [
    "AccountConfig",
    "StoredMapping",
    "load_account_config",
    "load_connection",
    "load_current_mapping",
    "load_mapping",
    "load_policy",
    "mapping_row",
]


def mapping_row(record: MappingRowRecord) -> MappingRow:
    """Returns the stored row as the domain's value."""
    return MappingRow(
        destination=record.destination,
        data_type=DataType(record.data_type),
        kind=FieldKind(record.kind),
        lead_source=record.lead_source,
        contact_source=record.contact_source,
        allow_push=record.allow_push,
    )


async def load_mapping(
    session: AsyncSession, *, account_id: str, version: int | None = None
) -> StoredMapping | None:
    """Returns a saved version of the account's mapping (the newest when `version` is None), or None."""
    query = select(MappingVersion).where(MappingVersion.account_id == account_id)
    if version is None:
        query = query.order_by(MappingVersion.version.desc()).limit(1)
    else:
        query = query.where(MappingVersion.version == version)
    record = await session.scalar(query)
    if record is None:
        return None
    rows = await session.scalars(
        select(MappingRowRecord)
        .where(MappingRowRecord.account_id == account_id, MappingRowRecord.mapping_version_id == record.id)
        .order_by(MappingRowRecord.position)
    )
    return StoredMapping(record.version, record.note, record.created_at, tuple(mapping_row(r) for r in rows))


async def load_current_mapping(
    session: AsyncSession, *, account_id: str, provider: str | None = None
) -> Mapping:
    """Returns the account's newest mapping, or its CRM's default one when none was saved (R7).

    The CRM is `provider`, else the account's connection's, else the default provider's.
    """
    stored = await load_mapping(session, account_id=account_id)
    if stored is not None:
        return stored.mapping
    if provider is None:
        connection = await load_connection(session, account_id=account_id)
        provider = connection.provider if connection is not None else DEFAULT_PROVIDER
    return provider_named(provider).default_mapping()


async def load_policy(session: AsyncSession, *, account_id: str) -> PushPolicy:
    """Returns the account's push policy (two-way when none was stored, R8)."""
    default_allow = await session.scalar(
        select(PushPolicyRecord.default_allow_push).where(PushPolicyRecord.account_id == account_id)
    )
    return PushPolicy(default_allow_push=True if default_allow is None else bool(default_allow))


async def load_connection(session: AsyncSession, *, account_id: str) -> CrmConnectionInfo | None:
    """Returns the account's CRM connection, or None when none was made."""
    record = await session.get(CrmConnection, account_id)
    return CrmConnectionInfo.from_record(record) if record is not None else None


async def load_account_config(session: AsyncSession, *, account_id: str) -> AccountConfig:
    """Returns the account's newest mapping (its CRM's defaults if none was saved), policy and connection."""
    connection = await load_connection(session, account_id=account_id)
    provider = connection.provider if connection is not None else DEFAULT_PROVIDER
    return AccountConfig(
        account_id=account_id,
        mapping=await load_current_mapping(session, account_id=account_id, provider=provider),
        policy=await load_policy(session, account_id=account_id),
        connection=connection,
    )
