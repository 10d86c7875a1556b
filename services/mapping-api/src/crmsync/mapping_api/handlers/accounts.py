"""Accounts and API keys: creating them (the admin CLI) and recognising a key (every call, R21)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.db.schema import (
    Account,
    ApiKey,
    PushPolicy,
    SyncSchedule,
)
from crmsync.common.domain.mapping import DEFAULT_SALESFORCE_ROWS
from crmsync.mapping_api.handlers.errors import Conflict, Invalid, NotFound
from crmsync.mapping_api.handlers.mapping import add_mapping_version

Role = Literal["admin", "reader"]
ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_PREFIX = "crmsync_"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the account every query is scoped to, and what the key may do."""

    account_id: str
    role: Role
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def slug_for(name: str) -> str:
    """Returns an account id derived from a display name ("Acme Corp." -> "acme-corp")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug


def hash_key(key: str) -> str:
    """Returns the stored form of an API key (sha256, hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_account(session: AsyncSession, *, name: str, account_id: str | None = None) -> Account:
    """Returns a new account with its default push policy, schedule and mapping version 1 (R7)."""
    account_id = account_id or slug_for(name)
    if not ACCOUNT_ID.match(account_id):
        raise Invalid(
            "an account id is 1-63 lower-case letters, digits, - or _, starting with a letter or digit",
            field="id",
        )
    if await session.get(Account, account_id) is not None:
        raise Conflict(f"account {account_id!r} already exists; choose another with --id", field="id")
    account = Account(id=account_id, name=name)
    session.add(account)
    session.add(PushPolicy(account_id=account_id, default_allow_push=True))
    session.add(SyncSchedule(account_id=account_id, mode="automatic", timezone="UTC"))
    await add_mapping_version(
        session,
        account_id=account_id,
        version=1,
        note="default Salesforce mapping",
        rows=DEFAULT_SALESFORCE_ROWS,
    )
    await session.flush()
    return account


async def create_api_key(session: AsyncSession, *, account_id: str, role: Role, name: str = "") -> str:
    """Returns a new API key in clear; only its hash is stored, so this is the one time it is seen."""
    if await session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id!r} does not exist", field="account")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(account_id=account_id, name=name, prefix=key[:14], key_hash=hash_key(key), role=role))
    await session.flush()
    return key


async def list_api_keys(session: AsyncSession, *, account_id: str) -> list[ApiKey]:
    """Returns the account's keys (prefix, role, dates; never the key), oldest first."""
    if await session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id!r} does not exist", field="account")
    return list(
        await session.scalars(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at)
        )
    )


async def revoke_api_key(session: AsyncSession, *, account_id: str, prefix: str) -> ApiKey:
    """Returns the one active key of the account starting with `prefix`, now revoked."""
    if len(prefix) < len(KEY_PREFIX) + 4:
        raise Invalid("give at least the first 12 characters of the key, as `key list` shows", field="prefix")
    # The prefix as `key list` shows it, a shorter start of it, or the whole key.
    keys = [
        key
        for key in await list_api_keys(session, account_id=account_id)
        if key.revoked_at is None and (key.prefix.startswith(prefix) or prefix.startswith(key.prefix))
    ]
    if not keys:
        raise NotFound(f"no active key of {account_id!r} starts with {prefix!r}", field="prefix")
    if len(keys) > 1:
        raise Conflict(f"{len(keys)} keys start with {prefix!r}; give more of the key", field="prefix")
    keys[0].revoked_at = datetime.now(UTC)
    await session.flush()
    return keys[0]


async def authenticate(session: AsyncSession, *, key: str) -> Caller | None:
    """Returns the caller a key belongs to, or None for an unknown or revoked key."""
    row = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        # To the minute: one write a minute per key in use, not one per request.
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
        )
        await session.commit()
    return Caller(account_id=row.account_id, role=row.role, key_id=str(row.id))  # type: ignore[arg-type]


# How stale a key's `last_used_at` may be.
LAST_USED_RESOLUTION = timedelta(minutes=1)
