"""The CRM connection in PostgreSQL, as `CrmConnectionInfo` values."""

from __future__ import annotations

from datetime import datetime

from crmsync.common.crm.connection import CrmConnectionInfo
from crmsync.common.db.account_config import load_connection
from crmsync.common.db.schema import CrmConnection
from crmsync.mapping_api.adapters.rows import SessionStore

# The columns a test of the connection writes; storing credentials writes these and the rest.
_CHECKED = ("status", "status_message", "api_usage", "api_limit", "instance_url", "last_checked_at")
_CREDENTIALS = (
    "provider",
    "login_url",
    "auth_method",
    "client_id",
    "username",
    "api_version",
    "secrets_encrypted",
)


class PostgresConnections(SessionStore):
    async def get(self, account_id: str) -> CrmConnectionInfo | None:
        return await load_connection(self._session, account_id=account_id)

    async def store(self, connection: CrmConnectionInfo, *, updated_at: datetime) -> None:
        row = await self._session.get(CrmConnection, connection.account_id)
        if row is None:
            row = CrmConnection(account_id=connection.account_id)
            self._session.add(row)
        _write(row, connection, _CREDENTIALS + _CHECKED)
        row.updated_at = updated_at
        await self._session.flush()

    async def record_check(self, connection: CrmConnectionInfo) -> None:
        row = await self._session.get(CrmConnection, connection.account_id)
        if row is None:
            raise LookupError(f"no CRM connection of {connection.account_id!r} to record a check on")
        _write(row, connection, _CHECKED)
        await self._session.flush()


def _write(row: CrmConnection, connection: CrmConnectionInfo, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(row, name, getattr(connection, name))
