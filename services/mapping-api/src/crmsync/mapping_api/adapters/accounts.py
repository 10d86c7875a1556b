"""Accounts and API keys in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select, update

from crmsync.common.db.schema import Account, ApiKey
from crmsync.mapping_api.adapters.rows import SessionStore, value_of
from crmsync.mapping_api.values import AccountInfo, ApiKeyInfo


class PostgresAccounts(SessionStore):
    async def get(self, account_id: str) -> AccountInfo | None:
        row = await self._session.get(Account, account_id)
        return value_of(AccountInfo, row) if row else None

    async def add(self, *, account_id: str, name: str) -> AccountInfo:
        row = Account(id=account_id, name=name)
        self._session.add(row)
        await self._session.flush()
        await self._session.refresh(row)
        return value_of(AccountInfo, row)

    async def add_key(self, *, account_id: str, name: str, prefix: str, key_hash: str, role: str) -> None:
        self._session.add(
            ApiKey(account_id=account_id, name=name, prefix=prefix, key_hash=key_hash, role=role)
        )
        await self._session.flush()

    async def keys(self, account_id: str) -> list[ApiKeyInfo]:
        rows = await self._session.scalars(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at)
        )
        return [value_of(ApiKeyInfo, row) for row in rows]

    async def revoke_key(self, key_id: uuid.UUID, *, at: datetime) -> None:
        await self._session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=at))

    async def active_key(self, key_hash: str) -> ApiKeyInfo | None:
        row = await self._session.scalar(
            select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
        return value_of(ApiKeyInfo, row) if row else None

    async def mark_key_used(self, key_id: uuid.UUID, *, at: datetime, unless_used_since: datetime) -> None:
        await self._session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= unless_used_since),
            )
            .values(last_used_at=at)
        )
