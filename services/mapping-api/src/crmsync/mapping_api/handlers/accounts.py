"""Recognising a key on every call (R21), and the caller's account."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from crmsync.mapping_api.handlers.errors import Forbidden, NotFound
from crmsync.mapping_api.handlers.ports import Transactions
from crmsync.mapping_api.values import AccountInfo

Role = Literal["admin", "reader"]
ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_PREFIX = "crmsync_"
# How stale a key's `last_used_at` may be.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the account every query is scoped to, and what the key may do."""

    account_id: str
    role: Role
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_admin(self) -> Caller:
        """Returns the caller when its key may write (R21); Forbidden otherwise."""
        if not self.is_admin:
            raise Forbidden("this needs an admin key; reader keys only read", field="Authorization")
        return self


def slug_for(name: str) -> str:
    """Returns an account id derived from a display name ("Acme Corp." -> "acme-corp")."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug


def hash_key(key: str) -> str:
    """Returns the stored form of an API key (sha256, hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(tx: Transactions, *, key: str, now: datetime) -> Caller | None:
    """Returns the caller a key belongs to, or None for an unknown or revoked key."""
    async with tx.begin() as stores:
        found = await stores.accounts.active_key(hash_key(key))
        if found is None:
            return None
        if found.last_used_at is None or now - found.last_used_at >= LAST_USED_RESOLUTION:
            # To the minute: one write a minute per key in use, not one per request.
            await stores.accounts.mark_key_used(
                found.id, at=now, unless_used_since=now - LAST_USED_RESOLUTION
            )
    return Caller(account_id=found.account_id, role=cast(Role, found.role), key_id=str(found.id))


async def read_account(tx: Transactions, *, account_id: str) -> AccountInfo:
    """Returns the caller's account."""
    async with tx.read() as stores:
        account = await stores.accounts.get(account_id)
    if account is None:
        raise NotFound("account not found")
    return account
