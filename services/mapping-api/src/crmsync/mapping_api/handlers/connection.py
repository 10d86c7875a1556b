"""The CRM connection: credentials sealed at rest, a test that records status and API budget (R20)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crmsync.common.crm.interface import CrmAuthError, CrmError, ObjectDescribe
from crmsync.common.crypto import SecretBox
from crmsync.common.db.schema import CrmConnection
from crmsync.common.domain.mapping import CrmObject
from crmsync.mapping_api.handlers.errors import Conflict, CrmUnavailable, Invalid, NoConnection, NotFound
from crmsync.mapping_api.handlers.ports import CrmPort

SECRET_NAMES = ("client_secret", "refresh_token", "private_key")
NEEDS = {
    "client_credentials": ("client_secret",),
    "refresh_token": ("refresh_token",),
    "jwt_bearer": ("username", "private_key"),
}


async def get_connection(session: AsyncSession, *, account_id: str) -> CrmConnection:
    """Returns the account's connection; NoConnection when none was stored."""
    connection = await session.get(CrmConnection, account_id)
    if connection is None:
        raise NoConnection()
    return connection


def stored_secret_names(connection: CrmConnection, *, secret_box: SecretBox) -> list[str]:
    """Returns which secrets are stored, never their values."""
    try:
        secrets = secret_box.open(connection.secrets_encrypted)
    except ValueError:
        return []
    return [name for name in SECRET_NAMES if secrets.get(name)]


async def put_connection(
    session: AsyncSession,
    *,
    account_id: str,
    login_url: str,
    auth_method: str,
    client_id: str,
    username: str | None,
    api_version: str,
    secrets: dict[str, str | None],
    secret_box: SecretBox,
) -> CrmConnection:
    """Returns the stored connection. Secrets not given keep their stored values; status resets."""
    connection = await session.get(CrmConnection, account_id)
    kept: dict[str, Any] = {}
    if connection is not None:
        try:
            kept = secret_box.open(connection.secrets_encrypted)
        except ValueError:
            kept = {}  # sealed with another key: the new values must be given again
    merged = {name: secrets.get(name) or kept.get(name) for name in SECRET_NAMES}
    given = {**merged, "username": username}
    for name in NEEDS[auth_method]:
        if not given.get(name):
            raise Invalid(f"auth_method {auth_method} needs {name}", field=name)
    sealed = secret_box.seal({k: v for k, v in merged.items() if v})
    if connection is None:
        connection = CrmConnection(account_id=account_id, provider="salesforce")
        session.add(connection)
    connection.login_url = login_url.rstrip("/")
    connection.auth_method = auth_method
    connection.client_id = client_id
    connection.username = username
    connection.api_version = api_version
    connection.secrets_encrypted = sealed
    connection.status = "untested"
    connection.status_message = None
    connection.instance_url = None
    connection.updated_at = datetime.now(UTC)
    await session.flush()
    return connection


async def check_connection(
    session: AsyncSession, *, account_id: str, crm: CrmPort, now: datetime
) -> CrmConnection:
    """Returns the connection after trying it: status connected or failed, and the API budget."""
    connection = await get_connection(session, account_id=account_id)
    try:
        async with crm.connect(connection) as connector:
            await connector.describe(CrmObject.LEAD.value)
            budget = await connector.budget()
            instance_url = getattr(connector, "instance_url", None)
    except CrmAuthError as exc:
        connection.status, connection.status_message = "failed", f"credentials refused: {exc.message}"
    except CrmError as exc:
        connection.status, connection.status_message = "failed", exc.message
    except ValueError as exc:
        # Credentials sealed under another secret key, or a connection the connector cannot use.
        connection.status, connection.status_message = "failed", str(exc)
    else:
        connection.status, connection.status_message = "connected", None
        connection.api_usage, connection.api_limit = budget.used, budget.limit
        if isinstance(instance_url, str):
            connection.instance_url = instance_url
    connection.last_checked_at = now
    await session.flush()
    return connection


async def _with_connector(session: AsyncSession, *, account_id: str, crm: CrmPort, work: Any) -> Any:
    connection = await get_connection(session, account_id=account_id)
    try:
        async with crm.connect(connection) as connector:
            return await work(connector)
    except CrmError as exc:
        raise CrmUnavailable(f"the CRM answered: {exc.message}", field="connection") from exc
    except ValueError as exc:
        # Credentials sealed under another secret key, or missing what the auth method needs.
        raise Conflict(f"the stored CRM connection cannot be used: {exc}", field="connection") from exc


async def entity_counts(session: AsyncSession, *, account_id: str, crm: CrmPort) -> list[tuple[str, int]]:
    """Returns the record count of each synced CRM entity (R20)."""

    async def work(connector: Any) -> list[tuple[str, int]]:
        return [(o.value, await connector.count(o.value)) for o in CrmObject]

    return await _with_connector(session, account_id=account_id, crm=crm, work=work)


async def entity_describe(
    session: AsyncSession, *, account_id: str, entity: str, crm: CrmPort
) -> ObjectDescribe:
    """Returns the live describe of one entity."""

    async def work(connector: Any) -> ObjectDescribe:
        return await connector.describe(entity)

    return await _with_connector(session, account_id=account_id, crm=crm, work=work)


async def sample_values(
    session: AsyncSession, *, account_id: str, entity: str, field: str, limit: int, crm: CrmPort
) -> list[Any]:
    """Returns up to `limit` distinct values of a field of the entity (R20)."""

    async def work(connector: Any) -> list[Any]:
        described = await connector.describe(entity)
        if field not in described.fields:
            raise NotFound(f"{entity} has no field {field!r}", field="field")
        return await connector.sample_values(entity, field, limit=limit)

    return await _with_connector(session, account_id=account_id, crm=crm, work=work)
