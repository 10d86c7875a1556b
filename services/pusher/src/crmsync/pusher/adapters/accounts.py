"""Accounts in Postgres (the AccountStore port): which exist, and their configuration."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Text, select
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.account_config import AccountConfig, load_account_config
from crmsync.common.db.schema import Account
from crmsync.pusher.adapters.arrays import any_of


class ConfigCache:
    """Account configurations kept for `ttl_s` seconds: a saved mapping applies within that time."""

    def __init__(self, *, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, AccountConfig]] = {}

    async def get(self, session: AsyncSession, account_id: str) -> AccountConfig:
        now = time.monotonic()
        cached = self._entries.get(account_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        config = await load_account_config(session, account_id=account_id)
        if self._ttl_s > 0:
            self._entries[account_id] = (now, config)
        return config


class PgAccounts:
    """Accounts through the caller's session."""

    def __init__(self, session: AsyncSession, configs: ConfigCache) -> None:
        self._session = session
        self._configs = configs

    async def existing(self, account_ids: Iterable[str]) -> set[str]:
        """Returns which of these accounts exist."""
        ids = list(set(account_ids))
        if not ids:
            return set()
        query = select(Account.id).where(Account.id == any_of(ids, Text))
        return set((await self._session.scalars(query)).all())

    async def config(self, account_id: str, *, cached: bool = True) -> AccountConfig:
        """Returns the account's newest mapping (the defaults if none was saved), policy and connection."""
        if cached:
            return await self._configs.get(self._session, account_id)
        return await load_account_config(self._session, account_id=account_id)
