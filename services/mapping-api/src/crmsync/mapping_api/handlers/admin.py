"""What `crmsync-admin` does: create accounts with their defaults, create, list and revoke API keys."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime

from crmsync.common.clock import utc_now
from crmsync.common.crm.providers import DEFAULT_PROVIDER
from crmsync.common.domain.mapping import PushPolicy
from crmsync.common.domain.schedule import Schedule, ScheduleMode
from crmsync.mapping_api.handlers.accounts import ACCOUNT_ID, KEY_PREFIX, Role, hash_key, slug_for
from crmsync.mapping_api.handlers.connection import chosen_provider, default_note
from crmsync.mapping_api.handlers.errors import Conflict, Invalid, NotFound
from crmsync.mapping_api.handlers.ports import Stores, Transactions
from crmsync.mapping_api.values import AccountInfo, ApiKeyInfo


async def create_account(
    tx: Transactions,
    *,
    name: str,
    account_id: str | None = None,
    provider: str = DEFAULT_PROVIDER,
    now: datetime | None = None,
) -> AccountInfo:
    """Returns a new account with its default push policy, schedule and mapping version 1: the
    default mapping of the CRM it will connect (R7)."""
    crm = chosen_provider(provider)
    account_id = account_id or slug_for(name)
    if not ACCOUNT_ID.match(account_id):
        raise Invalid(
            "an account id is 1-63 lower-case letters, digits, - or _, starting with a letter or digit",
            field="id",
        )
    now = now or utc_now()
    async with tx.begin() as stores:
        if await stores.accounts.get(account_id) is not None:
            raise Conflict(f"account {account_id!r} already exists; choose another with --id", field="id")
        account = await stores.accounts.add(account_id=account_id, name=name)
        await stores.policies.put(account_id, PushPolicy(default_allow_push=True), updated_at=now)
        await stores.schedules.put(account_id, Schedule(mode=ScheduleMode.AUTOMATIC), updated_at=now)
        await stores.mappings.add(
            account_id=account_id, version=1, note=default_note(crm), rows=crm.default_mapping().rows
        )
    return account


async def create_api_key(tx: Transactions, *, account_id: str, role: Role, name: str = "") -> str:
    """Returns a new API key in clear; only its hash is stored, so this is the one time it is seen."""
    async with tx.begin() as stores:
        await _existing_account(stores, account_id)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        await stores.accounts.add_key(
            account_id=account_id, name=name, prefix=key[:14], key_hash=hash_key(key), role=role
        )
    return key


async def list_api_keys(tx: Transactions, *, account_id: str) -> list[ApiKeyInfo]:
    """Returns the account's keys (prefix, role, dates; never the key), oldest first."""
    async with tx.read() as stores:
        await _existing_account(stores, account_id)
        return await stores.accounts.keys(account_id)


async def revoke_api_key(
    tx: Transactions, *, account_id: str, prefix: str, now: datetime | None = None
) -> ApiKeyInfo:
    """Returns the one active key of the account starting with `prefix`, now revoked."""
    if len(prefix) < len(KEY_PREFIX) + 4:
        raise Invalid("give at least the first 12 characters of the key, as `key list` shows", field="prefix")
    async with tx.begin() as stores:
        await _existing_account(stores, account_id)
        # The prefix as `key list` shows it, a shorter start of it, or the whole key.
        keys = [
            key
            for key in await stores.accounts.keys(account_id)
            if key.revoked_at is None and (key.prefix.startswith(prefix) or prefix.startswith(key.prefix))
        ]
        if not keys:
            raise NotFound(f"no active key of {account_id!r} starts with {prefix!r}", field="prefix")
        if len(keys) > 1:
            raise Conflict(f"{len(keys)} keys start with {prefix!r}; give more of the key", field="prefix")
        at = now or utc_now()
        await stores.accounts.revoke_key(keys[0].id, at=at)
    return replace(keys[0], revoked_at=at)


async def _existing_account(stores: Stores, account_id: str) -> AccountInfo:
    account = await stores.accounts.get(account_id)
    if account is None:
        raise NotFound(f"account {account_id!r} does not exist", field="account")
    return account
