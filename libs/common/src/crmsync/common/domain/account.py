"""An account's configuration as frozen values: its mapping, push policy and CRM connection (pure).

What every service reads before it pulls or pushes for an account. The
loader is `crmsync.common.db.account_config`; these values carry no I/O, so
use cases can take them through their ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.common.domain.allowance import allocated_calls
from crmsync.common.domain.mapping import Mapping, MappingRow, PushPolicy


@dataclass(frozen=True)
class CrmConnectionInfo:
    """An account's CRM connection; the secrets stay sealed until a connector opens them."""

    account_id: str
    provider: str
    login_url: str
    auth_method: str
    client_id: str
    secrets_encrypted: bytes
    api_version: str = "60.0"
    instance_url: str | None = None
    username: str | None = None
    status: str = "untested"
    status_message: str | None = None
    last_checked_at: datetime | None = None
    api_usage: int | None = None
    api_limit: int | None = None
    # crmsync's part of the daily limit: a share of it or a number of calls (never both), or neither.
    api_allocation_share: float | None = None
    api_allocation_calls: int | None = None

    @property
    def allocated_calls(self) -> int | None:
        """Returns the calls a day crmsync may make, by the limit last seen; None: no allocation holds."""
        return allocated_calls(self.api_limit, self.api_allocation_share, self.api_allocation_calls)

    @classmethod
    def from_record(cls, record: Any) -> CrmConnectionInfo:
        """Returns the value of a `crm_connections` row (any object with its columns as attributes)."""
        return cls(
            account_id=record.account_id,
            provider=record.provider,
            login_url=record.login_url,
            auth_method=record.auth_method,
            client_id=record.client_id,
            secrets_encrypted=record.secrets_encrypted,
            api_version=record.api_version or "60.0",
            instance_url=record.instance_url,
            username=record.username,
            status=record.status,
            status_message=record.status_message,
            last_checked_at=record.last_checked_at,
            api_usage=record.api_usage,
            api_limit=record.api_limit,
            api_allocation_share=record.api_allocation_share,
            api_allocation_calls=record.api_allocation_calls,
        )


@dataclass(frozen=True)
class StoredMapping:
    """A saved version of an account's mapping, with when and why it was saved."""

    version: int
    note: str | None
    created_at: datetime
    rows: tuple[MappingRow, ...]

    @property
    def mapping(self) -> Mapping:
        return Mapping(version=self.version, rows=self.rows)


@dataclass(frozen=True)
class AccountConfig:
    """What a service needs to know about one account to pull or push for it."""

    account_id: str
    mapping: Mapping
    policy: PushPolicy
    connection: CrmConnectionInfo | None
